"""Cost: the wall time and processes per benchmark class of one recorded run, as Markdown.

asv records, per benchmark, the wall time of its cells, and per setup_cache key the time of
that setup_cache (for the interleaved classes: their measuring processes,
`benchmarks/_interleave.py`), for one `run_benchmarks` call. `asv run` (one commit or a range)
makes one call per commit for all its rounds, so its durations are the whole run's. `asv
continuous` (and `asv run --interleave-rounds`) makes one call per round and commit, and the
results file keeps its final round's durations only: there the table shows one round, and a
commit's cost is estimated as each class's round times its rounds. This table adds them up per
class, so a change to the suite shows its cost like any other figure.

Compiling. Every measuring process builds and compiles every program of its class afresh (compile
times are sampled per process, with no persistent compilation cache), and the run records what
each compile took (`track_<operation>_compile`). Their sum per process is a floor under the
class's cost that no change to asv's bookkeeping removes: a comparison of two commits compiles
it once per measuring process of each commit.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from tabulate import tabulate

from .._asv import RecordedRun
from .cells import VARIANT_PARAM, grid

_CACHE_PREFIX = "<setup_cache "
_COMPILE_SUFFIX = "_compile"


@dataclasses.dataclass(frozen=True)
class ClassCost:
    """One benchmark class of a recorded run.

    Attributes:
        name: ``module.Class``.
        cells: asv processes started for its methods (cells x methods x rounds).
        measuring: processes its setup_cache started (interleaved classes), else 0.
        setup_seconds: wall time of its setup_cache.
        cell_seconds: wall time of its methods' cells.
        rounds: the most asv rounds any of its methods runs.
        round_seconds: for a run recorded round by round (`rounds_interleaved`), the estimated
            wall time of all its rounds: each method's final round times that method's rounds,
            the setup_cache (run in every round) times `rounds`.
        compiling: seconds one measuring process spent compiling, by the recorded compile times
            of its programs (the mean over the recorded processes, summed over the programs;
            the control twin, which reuses the baseline's program, left out); 0 for a class
            that records none.
    """

    name: str
    cells: int
    measuring: int
    setup_seconds: float
    cell_seconds: float
    rounds: int = 1
    round_seconds: float = 0.0
    compiling: float = 0.0

    @property
    def seconds(self) -> float:
        """All of the class's wall time."""
        return self.setup_seconds + self.cell_seconds

    @property
    def module(self) -> str:
        """The benchmark module the class is in."""
        return self.name.split(".", 1)[0]

    @property
    def compiling_per_commit(self) -> float:
        """Seconds one commit's run of the class spends compiling: `compiling` per process."""
        return self.compiling * self.measuring


def class_costs(run: RecordedRun) -> list[ClassCost]:
    """Per class, the processes and wall time of a recorded run, slowest first.

    Arguments:
        run: the recorded run.

    Returns:
        One `ClassCost` per class with a recorded duration.
    """
    durations = run.durations
    cells, seconds, measuring, setup, rounds, estimated, compiling = {}, {}, {}, {}, {}, {}, {}
    for name in run.names:
        cls = name.rsplit(".", 1)[0]
        info = run.benchmarks.get(name, {})
        combos = len(list(itertools.product(*info.get("params", [])))) or 1
        own = int(info.get("rounds", 1) or 1)
        rounds[cls] = max(rounds.get(cls, 1), own)
        cells[cls] = cells.get(cls, 0) + combos * own
        seconds[cls] = seconds.get(cls, 0.0) + float(durations.get(name, 0.0))
        estimated[cls] = estimated.get(cls, 0.0) + float(durations.get(name, 0.0)) * own
        if info.get("processes"):
            measuring[cls] = int(info["processes"])
        key = info.get("setup_cache_key")
        if key and f"{_CACHE_PREFIX}{key}>" in durations:
            setup[cls] = float(durations[f"{_CACHE_PREFIX}{key}>"])
        if name.endswith(_COMPILE_SUFFIX):
            compiling[cls] = compiling.get(cls, 0.0) + _compile_seconds(run, name)
    costs = [
        ClassCost(
            c,
            cells[c],
            measuring.get(c, 0),
            setup.get(c, 0.0),
            seconds[c],
            rounds[c],
            estimated[c] + setup.get(c, 0.0) * rounds[c],
            compiling.get(c, 0.0),
        )
        for c in cells
    ]
    return sorted(costs, key=lambda c: -c.seconds)


def _compile_seconds(run, name):
    # One process's compiling in this method's programs: per program the mean of its recorded
    # samples (its value where none were kept). The control twin reuses the baseline's program.
    cells = grid(run, name)
    control = cells.info.get("control")
    at = cells.param_names.index(VARIANT_PARAM) if cells.variants else None
    total = 0.0
    for key, cell in cells.cells.items():
        if not cell.ok or (at is not None and key[at] == control):
            continue
        values = cell.values
        if values:
            total += sum(values) / len(values)
    return total


@dataclasses.dataclass(frozen=True)
class ModuleCost:
    """One benchmark module of a recorded run, for one commit.

    Attributes:
        measuring: its classes' measuring processes.
        compiling: seconds they spend compiling (`ClassCost.compiling_per_commit`, summed).
        seconds: the wall time of all its classes, every round.
    """

    measuring: int
    compiling: float
    seconds: float

    @property
    def without_compiling(self) -> float:
        """Its wall time less its compiling: what it would take if compiling cost nothing."""
        return self.seconds - self.compiling


def module_compiling(costs: Sequence[ClassCost], interleaved: bool = False) -> dict[str, ModuleCost]:
    """Per benchmark module, its measuring processes, the seconds they spend compiling for one
    commit and the wall time of all its classes.

    Arguments:
        costs: `class_costs` of a run.
        interleaved: the run was recorded round by round (`rounds_interleaved`): a class's
            wall time is then its estimate for all rounds.

    Returns:
        module -> `ModuleCost`, for modules that compile anything.
    """
    out: dict[str, ModuleCost] = {}
    for c in costs:
        m = out.get(c.module, ModuleCost(0, 0.0, 0.0))
        seconds = c.round_seconds if interleaved else c.seconds
        out[c.module] = ModuleCost(m.measuring + c.measuring, m.compiling + c.compiling_per_commit, m.seconds + seconds)
    return {module: m for module, m in out.items() if m.compiling > 0}


def rounds_interleaved(run: RecordedRun) -> bool:
    """Whether the results file holds its final round's durations only (asv ran each round in a
    call of its own: `asv continuous`, `--interleave-rounds`).

    The results file does not say how asv was called; the durations do. Within one call asv adds
    up each benchmark's rounds, so a run of several rounds in one call records several times
    the time its final round spans (`RecordedRun.window`); a file of one round records about
    that span.

    Arguments:
        run: the recorded run.

    Returns:
        True when its durations add up to less than 1.5 times its final round's span and some
        benchmark runs several rounds.
    """
    window = run.window()
    if window is None or max((int(run.info(n).get("rounds") or 1) for n in run.names), default=1) < 2:
        return False
    span = (window[1] - window[0]) / 1000
    total = sum(v for k, v in run.durations.items() if k != "<build>")
    return total < 1.5 * span


def render_costs(run: RecordedRun, costs: Sequence[ClassCost], command: str) -> str:
    """The cost table as Markdown, with the run it comes from and the command that made it.

    Arguments:
        run: the recorded run.
        costs: its `class_costs`.
        command: the command stated in the header.

    Returns:
        The Markdown page.
    """
    source = (
        f"Generated by `{command}` from the recorded run of commit {run.commit[:8]} on machine "
        f"{run.machine} ({run.relative_path}). "
    )
    headers = ["class", "asv cells", "measuring processes", "setup_cache (s)", "cells (s)"]
    if not rounds_interleaved(run):
        rows = [_row(c) for c in costs]
        total = f"**{sum(c.seconds for c in costs) / 60:.1f}**"
        rows.append(
            ["**all classes**", sum(c.cells for c in costs), sum(c.measuring for c in costs), "", "", "", total]
        )
        headers += [_COMPILING_HEADER, "total (min)"]
        title = "What a full run of the suite costs"
        text = (
            "Wall time per class as asv recorded it: the setup_cache of an interleaved class (its "
            "first measuring process) plus every cell asv started for its methods (the later "
            "rounds' measuring processes among them)."
        )
    else:
        rows = [[*_row(c), c.rounds, f"{c.round_seconds / 60:.1f}"] for c in costs]
        one = sum(c.seconds for c in costs) / 60
        every = sum(c.round_seconds for c in costs) / 60
        cells = sum(c.cells for c in costs)
        rows.append(["**all classes**", cells, "", "", "", "", f"**{one:.1f}**", "", f"**{every:.1f}**"])
        headers += [_COMPILING_HEADER, "one round (min)", "rounds", "all rounds, estimated (min)"]
        title = "What one round of the suite costs"
        text = (
            "asv ran this recording round by round (`asv continuous`, or `--interleave-rounds`), "
            "one `run_benchmarks` call per round and commit, and the results file keeps the "
            "durations of its final round only. Each figure is that "
            "round's: the setup_cache of an interleaved class is one measuring process, its cells "
            "asv's reading of it. A commit's rounds are estimated as each method's round times "
            "its rounds, and each setup_cache's times its class's; two commits compared (`asv "
            "continuous`) cost about twice that."
        )
    table = tabulate(rows, headers=headers, tablefmt="github")
    return (
        f"# {title}\n\n{source}{text} Discovery, environment set-up, building the commit and asv's "
        "own start are not in these sums.\n\n" + table + "\n" + _render_compiling(costs, rounds_interleaved(run))
    )


_COMPILING_HEADER = "compiling per process (s)"


def _row(cost):
    return [
        cost.name,
        cost.cells,
        cost.measuring,
        f"{cost.setup_seconds:.0f}",
        f"{cost.cell_seconds:.0f}",
        _compiling(cost),
        f"{cost.seconds / 60:.1f}",
    ]


def _compiling(cost):
    return f"{cost.compiling:.1f}" if cost.compiling > 0 else ""


def _render_compiling(costs, interleaved):
    per_module = module_compiling(costs, interleaved)
    if not per_module:
        return ""
    rows = [
        [
            module,
            m.measuring,
            f"{m.compiling / 60:.1f}",
            f"{2 * m.compiling / 60:.1f}",
            f"{2 * m.without_compiling / 60:.1f}",
        ]
        for module, m in sorted(per_module.items(), key=lambda kv: -kv[1].compiling)
    ]
    table = tabulate(
        rows,
        headers=[
            "module",
            "measuring processes",
            "one commit (min)",
            "two commits compared (min)",
            "two commits compared, all but compiling (min)",
        ],
        tablefmt="github",
        disable_numparse=True,
    )
    return (
        "\n## Compiling: the floor under a comparison\n\n"
        f"`{_COMPILING_HEADER}` adds up the compile times this run recorded for one measuring "
        "process of the class (per program the mean over its processes; the control twin reuses "
        "the baseline's program and is left out). Every measuring process compiles its programs "
        "afresh, so that compile times are sampled in every process with no persistent "
        "compilation cache, and a comparison of two commits (`asv continuous A B -b MODULE`) "
        "runs every measuring process once per commit: per module, the minutes that compiling "
        "alone takes by this run's compile times, besides starting the processes, building the "
        "inputs and measuring. The last column is the rest: the module's recorded wall time less "
        "its compiling, for two commits. It is what a comparison at these rounds would still "
        "take if compiling cost nothing (a persistent compilation cache would still trace and "
        "lower every program, which the compile times include), before discovery, environment "
        "set-up and building the commits.\n\n" + table + "\n"
    )
