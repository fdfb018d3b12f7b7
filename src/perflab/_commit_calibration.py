"""Calibration across commits: two commits built by asv and compared with its interleaved rounds.

`python -m perflab calibrate --across-commits` clones the repository at HEAD into a scratch
folder and adds one commit on top of it:

- ``identical``: a docs-only commit (A/A): the benchmarked code is the same, so every flag by
  the two-commit rule or by asv compare's is false;
- ``slower`` (or ``slower:N``, N percent; ``slower`` is 10): a commit that adds
  ``perflab/_calibration_slowdown.py`` (``FRACTION = 0.10``), so the measuring code slows one
  variant of every class (its optimised one, else the first that is not the baseline) by that
  fraction of its own measured time: flags on that variant's timings are detections, flags
  elsewhere are false.

Each trial is one ``asv continuous HEAD~1 HEAD`` of the scratch clone (each commit built in
its own virtualenv, rounds interleaved; ``-a rounds=N`` when asked for more rounds), judged by
`perflab.report.commits` (the project's two-commit rule) and by asv compare's own rule at the
same factor. Every rate carries a Clopper-Pearson interval. asv hands its environment to every
measuring process, so a trial run under ``JAX_*``/``XLA_*``/``EQX_*`` variables measures that
setting: the trial keeps them (``setting.txt``) and the report names them. Its detection rates
belong to the machine that measured them (how noisy its processes are sets what a number of
rounds can see), so a kept trial also keeps that machine's CPU (``host.txt``, as asv detects it)
and the report names it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence

from asv import util as asv_util

from . import _asv, significance
from ._git import git
from .report import check, commits

SLOWDOWN = 0.10
"""The slowdown of a plain ``slower`` trial."""


def slowdown_of(kind: str) -> float:
    """The fraction a trial's scratch commit slows its variant by: 0 for ``identical``, 0.10
    for ``slower``, N/100 for ``slower:N``.

    Raises:
        PerflabError: naming ``--across-commits`` for any other kind.
    """
    name, sep, percent = kind.partition(":")
    if name == "identical" and not sep:
        return 0.0
    if name == "slower":
        if not sep:
            return SLOWDOWN
        try:
            value = float(percent)
        except ValueError:
            value = math.nan
        if 0 < value < 100:
            return value / 100
    raise _asv.PerflabError(
        "--across-commits", f"trial kinds are 'identical', 'slower' or 'slower:N' (0 < N < 100 percent), got {kind!r}"
    )


@dataclasses.dataclass
class Counts:
    """One class's counts in one trial, for unchanged timings or for the slowed variant's.

    Attributes:
        cells: timing cells judged (per-call times, ratios of them, compile times).
        own: flagged by the two-commit rule's own-time rule (a detection: flagged slower).
        asv: flagged by asv compare's rule on the same figure.
        relative: flagged by the two-commit rule's relative rule.
        relative_cells: cells the relative rule judged (cells of enough variants).
        gate: read by the gate (`CellChange.gate_kind`): unchanged cells flagged either way,
            detections where it fails.
        gate_cells: the cells the gate judges: every detection, the unchanged cells it gates
            (not the control twin, not the companions asv.conf.json keeps off its regressions page).
        above_one: detections only: the own-time interval excludes 1, whatever the factor.
        asv_relative: detections only: asv compare flagged the cell's relative-time figure
            (``track_<operation>_relative``) slower.
        asv_relative_cells: cells with a relative-time figure recorded for both commits.
        asv_either: detections only: asv compare flagged the cell's own time or its relative
            time slower.
        relative_row: detections only: the two-commit rule flagged the cell's relative-time
            figure (``track_<operation>_relative``) slower, on which the gate fails too.
        relative_above_one: detections only: the relative rule's interval excludes 1.
        either_above_one: detections only: either rule's interval excludes 1 (the gate's
            intervals, whatever the factor).
    """

    cells: int = 0
    own: int = 0
    asv: int = 0
    relative: int = 0
    relative_cells: int = 0
    gate: int = 0
    above_one: int = 0
    asv_relative: int = 0
    asv_relative_cells: int = 0
    asv_either: int = 0
    relative_above_one: int = 0
    either_above_one: int = 0
    relative_row: int = 0
    gate_cells: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


@dataclasses.dataclass
class CommitTrial:
    """One judged trial: counts per class, for the two rules and asv compare's.

    Attributes:
        kind: ``"identical"``, ``"slower"`` or ``"slower:N"``.
        number: the trial's place in its calibration (``commits<number>/`` when kept).
        confidence: the level of the two-commit rule's intervals.
        rounds: asv rounds (measuring processes) per commit, the most any timing cell holds.
        false: class -> `Counts` of the timings of variants that did not change (every figure
            asv samples, relative times included).
        detected: class -> `Counts` of the slowed variant's per-call times (its relative times
            are counted with them, as `Counts.asv_relative`).
        single_changed: single-value figures that differ between the commits (of how many).
        setting: the variables of the trial's environment that change how JAX or XLA runs
            (``"JAX_CPU_ENABLE_ASYNC_DISPATCH=false"``), ``""`` for none.
        gate_fails: the cells that fail the gate at the trial's level, every class together: the
            gate (the exit status of ``report --commits --gate-confidence LEVEL``) exits 1 when
            any does.
        pair: the two recorded commits (``"f9023c4a -> 98cd5c1d"``) of a pair judged from the
            project's results (`judge_recorded_pairs`), ``""`` for a calibration's own trials.
        host: the CPU of the machine that recorded the trial (`measuring_host`), ``""`` where it
            was not kept.
    """

    kind: str
    confidence: float = commits.CONFIDENCE
    rounds: int = 0
    number: int = 0
    false: dict[str, Counts] = dataclasses.field(default_factory=dict)
    detected: dict[str, Counts] = dataclasses.field(default_factory=dict)
    single_changed: list = dataclasses.field(default_factory=lambda: [0, 0])
    setting: str = ""
    gate_fails: int = 0
    pair: str = ""
    host: str = ""

    def total(self, which: str) -> Counts:
        """All classes' `Counts` together, of ``"false"`` or ``"detected"``."""
        return sum(getattr(self, which).values(), Counts())


MEASURING_PREFIXES = ("JAX_", "XLA_", "EQX_")
"""Environment variables that asv passes to every measuring process and that change what JAX,
XLA or equinox run: a trial recorded under them is a different setting, named beside it."""


def measuring_setting(environ) -> str:
    """The variables of `environ` that change what is measured, ``"K=V K=V"`` (sorted)."""
    return " ".join(f"{k}={v}" for k, v in sorted(environ.items()) if k.startswith(MEASURING_PREFIXES))


def measuring_host() -> str:
    """This machine's CPU as asv detects it, and its number of CPUs (``"AMD EPYC, 2 CPUs"``)."""
    return f"{asv_util.get_cpu_info() or 'unknown CPU'}, {os.cpu_count()} CPUs"


def _kept_text(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _scratch_commit(repo, kind):
    fraction = slowdown_of(kind)
    if not fraction:
        with open(os.path.join(repo, "README.md"), "a", encoding="utf-8") as fh:
            fh.write("\n")
        message = "calibration: docs only"
    else:
        path = os.path.join(repo, "src", "perflab", "_calibration_slowdown.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(
                f'"""A calibration commit: one variant of every class made slower."""\n\nFRACTION = {fraction!r}\n'
            )
        message = f"calibration: one variant {fraction:.0%} slower"
    for args in (("add", "-A"), ("-c", "user.name=calibrate", "-c", "user.email=c@c", "commit", "-qm", message)):
        if git(repo, *args) is None:
            raise _asv.PerflabError("--across-commits", f"git {' '.join(args)} failed in the scratch clone {repo}")


def _slowed_of(run, name):
    # The variant the harness slows (`InterleavedBenchmark.slowed_variant`), read from the roles
    # asv exported: the optimised one, else the first that is neither the baseline nor a twin.
    info = run.info(name)
    values = [_asv.label(v) for v in run.benchmarks[name].get("params", [[]])[-1]]
    others = [v for v in values if v not in (info.get("baseline"), "control", "plus5pct", "plus10pct")]
    return info.get("optimised") or (others[0] if others else info.get("baseline"))


def judge_pair(
    kind: str,
    results_dir: str,
    machine: str,
    factor: float,
    confidence: float | None = None,
    number: int = 0,
    setting: str = "",
    ungated: Sequence[str] = (),
    host: str = "",
) -> CommitTrial:
    """Judge the two commits one trial recorded.

    Arguments:
        kind: the trial's kind (see the module's doc).
        results_dir: the trial's asv results.
        machine: the asv machine name.
        factor: the ratio a change must exceed.
        confidence: the two-commit rule's level (default: the rule's own, see
            `perflab.report.commits.confidence_for`).
        number: the trial's place in its calibration.
        setting: the trial's measuring environment (see `measuring_setting`).
        ungated: the benchmarks the gate lists but does not judge
            (`perflab.report.commits.ungated_patterns`).
        host: the CPU of the machine that recorded the trial (`measuring_host`), ``""`` if unknown.

    Returns:
        The trial's counts.
    """
    _, runs = _asv.machine_runs(results_dir, machine)
    if len(runs) != 2:
        raise _asv.PerflabError(
            "--across-commits", f"expected two recorded commits in {results_dir!r}, got {len(runs)}"
        )
    a, b = sorted(runs, key=lambda r: r.date or 0)
    return judge_runs(kind, a, b, factor, confidence, number, setting, ungated, host=host)


def judge_runs(
    kind: str,
    a: _asv.RecordedRun,
    b: _asv.RecordedRun,
    factor: float,
    confidence: float | None = None,
    number: int = 0,
    setting: str = "",
    ungated: Sequence[str] = (),
    pair: str = "",
    host: str = "",
) -> CommitTrial:
    """Judge commit B's run against commit A's as one trial (see `judge_pair`).

    Arguments:
        kind: the trial's kind (see the module's doc).
        a, b: the two commits' runs, same machine.
        factor, confidence, number, setting, ungated, host: as for `judge_pair`.
        pair: the commits' names for the report (``"f9023c4a -> 98cd5c1d"``), ``""`` for a
            calibration's own scratch commits.

    Returns:
        The trial's counts.
    """
    slower = slowdown_of(kind) > 0
    # The gate at the level the rule is judged at, so that each level's row says what
    # ``--confidence LEVEL --gate-confidence LEVEL`` would.
    gate = commits.GATE_CONFIDENCE if confidence is None else confidence
    changes = commits.compare_commits(a, b, factor, confidence=confidence, ungated=ungated, gate_confidence=gate)
    # The level the rule used: the one asked for, else the one its verdicts carry.
    levels = [c.verdict.confidence for c in changes if c.verdict is not None]
    level = confidence or (levels[0] if levels else commits.CONFIDENCE)
    trial = CommitTrial(kind, level, number=number, setting=setting, pair=pair, host=host)
    trial.gate_fails = sum(c.fails_gate for c in changes)
    slowed_variants = {name: _slowed_of(a, name) for name in {c.benchmark for c in changes}}
    # asv compare's rule and the two-commit rule on the slowed variant's relative times, by the
    # cell of its own time.
    relative_flags, relative_rows = {}, {}
    for change in changes:
        if slower and change.benchmark.endswith(commits.RELATIVE_ROWS) and change.verdict is not None:
            if dict(change.params).get("variant") == slowed_variants[change.benchmark]:
                flag = _asv.asv_compare_flags(change.a.values, change.b.values, factor) and change.verdict.ratio > 1
                cell = (change.benchmark.removesuffix(commits.RELATIVE_ROWS), change.params)
                relative_flags[cell] = flag
                relative_rows[cell] = change
    for change in changes:
        cls = change.benchmark.split(".")[1]
        if change.verdict is None:
            trial.single_changed[0] += change.kind == commits.CHANGED
            trial.single_changed[1] += 1
            continue
        trial.rounds = max(trial.rounds, len(change.a.values), len(change.b.values))
        is_slowed = slower and dict(change.params).get("variant") == slowed_variants[change.benchmark]
        if is_slowed and change.unit != "seconds":
            continue  # ratios and derived figures of the slowed variant move by design
        asv_flag = _asv.asv_compare_flags(change.a.values, change.b.values, factor)
        if is_slowed:
            counts = trial.detected.setdefault(cls, Counts())
            own, relative = change.kind == commits.REGRESSION, change.relative_kind == commits.REGRESSION
            asv_flag = asv_flag and change.verdict.ratio > 1
            own_above = bool(change.verdict.tested and change.verdict.low > 1)
            relative_above = change.relative is not None and bool(change.relative.tested and change.relative.low > 1)
            counts.above_one += own_above
            counts.relative_above_one += relative_above
            counts.either_above_one += own_above or relative_above
            relative_flag = relative_flags.get((change.benchmark, change.params))
            counts.asv_relative_cells += relative_flag is not None
            counts.asv_relative += bool(relative_flag)
            counts.asv_either += asv_flag or bool(relative_flag)
            relative_row = relative_rows.get((change.benchmark, change.params))
            counts.relative_row += relative_row is not None and relative_row.kind == commits.REGRESSION
            # The gate fails on the cell's relative-time row too (that row's false alarms are
            # counted with the unchanged cells).
            gate = change.fails_gate or (relative_row is not None and relative_row.fails_gate)
        else:
            counts = trial.false.setdefault(cls, Counts())
            own, relative = change.kind != commits.NOISE, change.relative_kind not in (None, commits.NOISE)
            gate = change.gate_kind != commits.NOISE
        counts.cells += 1
        counts.own += own
        counts.asv += asv_flag
        counts.relative += relative
        counts.relative_cells += change.relative is not None
        counts.gate += gate
        counts.gate_cells += is_slowed or change.gated
    return trial


def run_commit_trials(
    kinds: Sequence[str],
    classes: Sequence[str],
    config: str,
    factor: float,
    keep: str | None = None,
    log=None,
    rounds: int | None = None,
    confidences: Sequence[float | None] = (None,),
) -> list[CommitTrial]:
    """Record and judge one trial per entry of `kinds` (see the module's doc).

    Arguments:
        kinds: ``"identical"`` / ``"slower"`` / ``"slower:N"`` per trial, in order.
        classes: asv ``-b`` regular expressions.
        config: the project's asv configuration.
        factor: the ratio a change must exceed.
        keep: a folder to keep each trial's results in (``commits0/`` ...), else discarded.
        log: a file to echo progress to, or ``None``.
        rounds: asv rounds per commit (``-a rounds=N``), else each class's own.
        confidences: the two-commit rule's levels to judge every trial at (``None``: its own).

    Returns:
        The judged trials, in order, each at every level of `confidences`.
    """
    for kind in kinds:
        slowdown_of(kind)
    if rounds is not None and rounds < 2:
        raise _asv.PerflabError("--rounds", f"two commits are paired round by round: at least 2 rounds, got {rounds}")
    root = git(os.path.dirname(os.path.abspath(config)), "rev-parse", "--show-toplevel")
    if root is None:
        raise _asv.PerflabError("--config", f"{config!r} is not in a git repository")
    out = []
    with tempfile.TemporaryDirectory(prefix="perflab-calibrate-commits-") as tmp:
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        env = os.environ | {"HOME": home}
        machine = [sys.executable, "-m", "asv", "machine", "--yes", "--machine", "calibrate"]
        _asv.run_asv(machine, env, "asv machine", cwd=root)
        # New trials are numbered after the ones `keep` already holds.
        first = 1 + max(_kept_numbers(keep), default=-1) if keep and os.path.isdir(keep) else 0
        for i, kind in enumerate(kinds, start=first):
            repo = os.path.join(tmp, f"repo{i}")
            if git(tmp, "clone", "-q", root, repo) is None:
                raise _asv.PerflabError("--config", f"cannot clone {root}")
            _scratch_commit(repo, kind)
            results_dir = os.path.abspath(os.path.join(keep or tmp, f"commits{i}"))
            repo_config = os.path.join(repo, os.path.relpath(config, root))
            conf = _asv.load_config(repo_config)
            # One virtualenv folder for every trial: the pinned dependencies install once.
            env_dir = os.path.join(os.path.expanduser("~"), ".cache", "perflab", "calibrate-env")
            conf |= {
                "repo": repo,
                "results_dir": results_dir,
                "env_dir": env_dir,
                "benchmark_dir": os.path.join(repo, "benchmarks"),
                "html_dir": os.path.join(tmp, "html"),
            }
            # Beside the clone's pyproject.toml: asv installs the build requirements it names
            # into the environments it creates.
            conf_path = os.path.join(repo, "asv.calibrate.json")
            with open(conf_path, "w", encoding="utf-8") as fh:
                json.dump(conf, fh)
            cmd = [
                sys.executable,
                "-m",
                "asv",
                "continuous",
                "HEAD~1",
                "HEAD",
                "--record-samples",
                "--machine",
                "calibrate",
                "--factor",
                str(factor),
                "--config",
                conf_path,
            ]
            for pattern in classes:
                cmd += ["-b", pattern]
            if rounds is not None:
                cmd += ["-a", f"rounds={rounds}"]
            if log:
                print(
                    f"commit trial {i - first + 1}/{len(kinds)} ({kind}): {shlex.join(cmd[2:])}",
                    file=log,
                    flush=True,
                )
            # asv continuous exits 1 when it finds a regression: a slower trial's expected end.
            said = _asv.run_asv(cmd, env, "--across-commits", cwd=repo, allowed=(0, 1))
            machine_dir = os.path.join(results_dir, "calibrate")
            recorded = [n for n in os.listdir(machine_dir) if n != "machine.json"] if os.path.isdir(machine_dir) else []
            if len(recorded) < 2:
                # e.g. "No benchmarks selected": asv exits 0 when --bench matches nothing.
                raise _asv.PerflabError(
                    "--bench", f"asv continuous recorded {len(recorded)} of 2 commits in {machine_dir}:\n{said[-1500:]}"
                )
            setting, host = measuring_setting(env), measuring_host()
            if keep:
                for name, text in (("kind.txt", kind), ("setting.txt", setting), ("host.txt", host)):
                    if text:
                        with open(os.path.join(results_dir, name), "w", encoding="utf-8") as fh:
                            fh.write(text + "\n")
            ungated = commits.ungated_patterns(repo_config)
            out += [
                judge_pair(kind, results_dir, "calibrate", factor, level, i, setting, ungated, host)
                for level in confidences
            ]
    return out


def judge_kept(
    folder: str, factor: float, confidences: Sequence[float | None] = (None,), ungated: Sequence[str] = ()
) -> list[CommitTrial]:
    """Judge again the commit trials an earlier run kept in `folder` (``commits0/`` ...), at
    every level of `confidences` (``None``: the rule's own), the benchmarks `ungated` names
    left out of the gate."""
    trials = []
    for number in sorted(_kept_numbers(folder)):
        path = os.path.join(folder, f"commits{number}")
        kind, setting, host = (_kept_text(path, name) for name in ("kind.txt", "setting.txt", "host.txt"))
        if not kind:
            raise _asv.PerflabError("--from", f"{path} keeps no kind.txt: not a trial kept by --keep")
        trials += [
            judge_pair(kind, path, "calibrate", factor, level, number, setting, ungated, host) for level in confidences
        ]
    return trials


@dataclasses.dataclass(frozen=True)
class RecordedPair:
    """Two commits of identical benchmarked code recorded in the project's results.

    Attributes:
        a, b: the two commits' runs (A the parent side).
        areas: what the commits differ in, by top-level file or folder
            (`perflab.report.check.changed_areas`).
    """

    a: _asv.RecordedRun
    b: _asv.RecordedRun
    areas: tuple[str, ...]

    @property
    def name(self) -> str:
        """``"f9023c4a -> 98cd5c1d"``."""
        return f"{self.a.commit[:8]} -> {self.b.commit[:8]}"


def recorded_pairs(root: str, results_dir: str, machine: str, pairs: Sequence[str]) -> list[RecordedPair]:
    """The identical-code pairs `pairs` names, read from the project's results.

    Arguments:
        root: the repository that resolves the commits.
        results_dir: the asv results directory.
        machine: the asv machine both commits were recorded on.
        pairs: ``"A:B"`` per pair, A and B any git revision or recorded hash prefix.

    Returns:
        One `RecordedPair` per entry, in order.

    Raises:
        PerflabError: a pair not of the form ``A:B``, a commit not recorded on `machine`, or
            two commits whose benchmarked code differs (`perflab.report.check.measured_changes`):
            flags on such a pair are not false alarms.
    """
    _, runs = _asv.machine_runs(results_dir, machine)
    found = []
    for pair in pairs:
        first, sep, second = pair.partition(":")
        if not sep or not first or not second:
            raise _asv.PerflabError("--pairs", f"expected OLD:NEW (two commits), got {pair!r}")
        a, b = (commits.pick_run(runs, rev, root, None, "--pairs") for rev in (first, second))
        changed = check.measured_changes(root, a.commit, b.commit)
        if changed is None:
            raise _asv.PerflabError("--pairs", f"{pair}: git cannot compare {a.commit[:8]} and {b.commit[:8]} here")
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            why = f"{pair}: the benchmarked code differs between the two commits ({shown}); expected identical code"
            raise _asv.PerflabError("--pairs", why)
        found.append(RecordedPair(a, b, tuple(check.changed_areas(root, a.commit, b.commit) or ())))
    return found


def judge_recorded_pairs(
    pairs: Sequence[RecordedPair],
    factor: float,
    confidences: Sequence[float | None] = (None,),
    ungated: Sequence[str] = (),
) -> list[CommitTrial]:
    """Judge recorded identical-code pairs as ``identical`` trials, numbered in order, at every
    level of `confidences` (``None``: the rule's own)."""
    return [
        judge_runs("identical", p.a, p.b, factor, level, number, ungated=ungated, pair=p.name)
        for number, p in enumerate(pairs)
        for level in confidences
    ]


def render_pairs(pairs: Sequence[RecordedPair]) -> str:
    """Markdown: the pairs a page judges, what each changed, and its scope."""
    lines = [
        "## The pairs",
        "",
        "Each pair: two commits whose benchmarked code is identical (nothing under `benchmarks/`, "
        "`src/perflab/` but its report code, `setup.py`, `pyproject.toml` or asv.conf.json's "
        "`matrix` differs), both recorded on one machine; every flag on them is false.",
        "",
        "| trial | pair | machine | benchmark modules | rounds interleaved | the commits differ in |",
        "|---|---|---|---|---|---|",
    ]
    for number, p in enumerate(pairs):
        modules = sorted({name.split(".")[0] for name in set(p.a.names) & set(p.b.names)})
        paired = "yes" if commits.interleaved(p.a, p.b) else "no"
        areas = ", ".join(p.areas) or "nothing"
        lines.append(f"| {number} | {p.name} | {p.a.machine} | {', '.join(modules)} | {paired} | {areas} |")
    return "\n".join(lines + [""])


def _kept_numbers(folder):
    return [int(n[7:]) for n in os.listdir(folder) if n.startswith("commits") and n[7:].isdigit()]


def _rate(hits, total):
    if not total:
        return "none"
    low, high = significance.binomial_interval(hits, total)
    return f"{hits}/{total} ({_percent(hits / total)}; 95% CI {_percent(low)}-{_percent(high)})"


def _percent(x):
    # A bound under 0.05% would print as 0.0%, the same as none at all.
    if 0 < x < 0.00005:
        return "<0.01%"
    return f"{x:.2%}" if 0 < x < 0.0005 else f"{x:.1%}"


def _within(hits, total):
    if not total:
        return "no cell it judges"
    return "within 1%" if hits <= 0.01 * total else "above 1%"


def _met(ok):
    return "met" if ok else "missed"


def _unchanged(c):
    if c is None:
        return ["n/a"] * 4
    return [
        _rate(c.gate, c.gate_cells),
        _rate(c.own, c.cells),
        _rate(c.relative, c.relative_cells),
        _rate(c.asv, c.cells),
    ]


def _slowed(c):
    if c is None or not c.cells:
        return ["n/a"] * 8
    return [
        _rate(c.gate, c.cells),
        _rate(c.own, c.cells),
        _rate(c.relative, c.relative_cells),
        _rate(c.relative_row, c.asv_relative_cells),
        _rate(c.asv, c.cells),
        _rate(c.asv_relative, c.asv_relative_cells),
        _rate(c.asv_either, c.cells),
        _rate(c.either_above_one, c.cells),
    ]


def _label(trial):
    fraction = slowdown_of(trial.kind)
    label = f"slower (+{fraction:.0%})" if fraction else "identical"
    label = f"{label}, {trial.pair}" if trial.pair else label
    label = f"{label}, {trial.setting}" if trial.setting else label
    return f"{label}, on {trial.host}" if trial.host else label


def render(trials: Sequence[CommitTrial], factor: float) -> str:
    """Markdown: per trial, level and class, flags on unchanged timings and detections of the
    slowed variant, by the two-commit gate, each of its two rules, and asv compare."""
    # Identical-code trials alone have no detections: their columns would be n/a throughout, and
    # the definitions of what detects a slowdown would define nothing on the page.
    has_detections = any(trial.detected for trial in trials)
    unchanged = "every timing of the identical-code trials"
    if has_detections:
        unchanged += (
            ", and of the variants the slower commit did not touch. Detections: timings of the variant "
            "the slower commit slowed, flagged slower"
        )
    detected = (
        "; a slowed cell counts as detected by the "
        "gate where the gate fails on it or on its relative-time row ('relative row': the two-commit rule "
        "flags that row; the unchanged variants' relative rows are counted among "
        "the unchanged cells, so their false alarms are in its left-hand rate). 'Interval above 1': either rule's "
        "interval excludes 1, whatever the factor. asv compare, on the slowed cells: its "
        "rule on the cell's own per-call times, on its relative times (the harness's "
        "`track_<operation>_relative`: the variant's time over the geometric mean of its cell's variants, per "
        "process; 'none' for trials recorded before the harness recorded it), and either row of the "
        "cell flagged"
        if has_detections
        else ""
    )
    # Only a page with a trial that kept its machine explains the label (recorded pairs name theirs
    # in their own table).
    hosts = (
        " A trial that kept the machine it ran on names its CPU there too (`host.txt`): how noisy a "
        "machine's processes are sets what its rounds can see, so rates measured on two machines are "
        "two measurements; trials without it did not keep it."
        if any(trial.host for trial in trials)
        else ""
    )
    lines = [
        "## Across commits (asv continuous, interleaved rounds)",
        "",
        f"Factor {factor}. Unchanged cells: {unchanged}. The two-commit gate (`report --commits`) flags a cell by "
        "either of its rules: the cell's own times (B/A of its samples; for a variant other than the "
        "baseline, not where its identical-code control's B/A lies beyond the factor the same way and "
        "the variant's B/A beyond the control's, round by round, is not flagged) or the relative rule (its "
        "B/A beyond the change its cell's variants share, on the harness's relative times where both commits "
        "recorded them, judged where a cell has at least "
        f"{commits.MIN_COMMON} variants; 'of N' counts those); it judges neither the control twin nor "
        "the companions asv.conf.json keeps off the regressions page, so its unchanged cells are the "
        f"others{detected}. Rounds: measuring processes per "
        "commit, paired round by round. Level: both rules' intervals, and the gate's (what `report --commits "
        "--confidence LEVEL --gate-confidence LEVEL` does; the gate's default is "
        f"{commits.GATE_CONFIDENCE:.1%}). A trial recorded with "
        "variables that change how JAX or XLA runs names them after its kind: it measured that "
        f"setting, not the default.{hosts}",
        "",
    ]
    header = "| trial | rounds | level | class | unchanged flagged: gate | own times | relative | asv compare |"
    if has_detections:
        header += (
            " slowed detected: gate | own times | relative | relative row | asv compare: own times | asv compare: "
            "relative times | asv compare: either | interval above 1 |"
        )
    lines += [header, "|" + "---|" * header.count(" |")]
    for trial in trials:
        for cls in sorted(set(trial.false) | set(trial.detected)):
            row = [str(trial.number) + f" ({_label(trial)})", str(trial.rounds), f"{trial.confidence:.1%}", cls]
            row += _unchanged(trial.false.get(cls)) + (_slowed(trial.detected.get(cls)) if has_detections else [])
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "What each trial says, all classes together (goals: unchanged cells flagged at most 1%; "
        f"a slowdown of {SLOWDOWN:.0%} or more flagged in at least 95% of its cells by the two-commit "
        "gate and by asv compare; a smaller one's interval above 1 in at least half of its cells):",
        "",
    ]
    for trial in trials:
        f, d = trial.total("false"), trial.total("detected")
        text = (
            f"- Trial {trial.number} ({_label(trial)}, {trial.rounds} rounds, level {trial.confidence:.1%}): "
            f"unchanged cells flagged {_rate(f.gate, f.gate_cells)} by the two-commit gate "
            f"({_within(f.gate, f.gate_cells)}; own times "
            f"{_rate(f.own, f.cells)}, relative {_rate(f.relative, f.relative_cells)}), {_rate(f.asv, f.cells)} "
            f"by asv compare ({_within(f.asv, f.cells)})"
        )
        if d.cells and slowdown_of(trial.kind) >= SLOWDOWN:
            text += (
                f"; slowed cells flagged {_rate(d.gate, d.cells)} by the two-commit gate "
                f"({_met(d.gate >= 0.95 * d.cells)}; own times {_rate(d.own, d.cells)}, relative "
                f"{_rate(d.relative, d.relative_cells)}, relative row {_rate(d.relative_row, d.asv_relative_cells)}), "
                f"{_rate(d.asv_either, d.cells)} by asv compare "
                f"({_met(d.asv_either >= 0.95 * d.cells)}; own times {_rate(d.asv, d.cells)}, relative times "
                f"{_rate(d.asv_relative, d.asv_relative_cells)})"
            )
        elif d.cells:
            # Under the factor no rule may flag it; the goal is the interval's alone.
            text += (
                f"; slowed cells' interval above 1 in {_rate(d.either_above_one, d.cells)} "
                f"({_met(2 * d.either_above_one >= d.cells)}; own times {_rate(d.above_one, d.cells)}, relative "
                f"{_rate(d.relative_above_one, d.relative_cells)}); flagged {_rate(d.gate, d.cells)} by the "
                f"two-commit gate, {_rate(d.asv_either, d.cells)} by asv compare"
            )
        exits = f"exits 1 ({trial.gate_fails} cells fail it)" if trial.gate_fails else "exits 0"
        lines.append(f"{text}; the gate {exits}.")
    lines += ["", "The gate's exit status, trial by trial (a pull request's verdict), per level:", ""]
    levels = {t.confidence for t in trials}
    for level in sorted(levels, reverse=True):
        at = [t for t in trials if t.confidence == level]
        same = [t for t in at if not slowdown_of(t.kind)]
        slowed = [t for t in at if slowdown_of(t.kind) >= SLOWDOWN]
        lines.append(
            f"- {level:.1%}: identical-code trials exit 1 in {_rate(sum(t.gate_fails > 0 for t in same), len(same))}; "
            f"trials slowed by {SLOWDOWN:.0%} or more in {_rate(sum(t.gate_fails > 0 for t in slowed), len(slowed))}."
        )
    lines += ["", "Unchanged cells, every trial together, per level:", ""]
    for level in sorted(levels, reverse=True):
        f = sum((t.total("false") for t in trials if t.confidence == level), Counts())
        lines.append(
            f"- {level:.1%}: flagged {_rate(f.gate, f.gate_cells)} by the two-commit gate "
            f"({_within(f.gate, f.gate_cells)}; own times {_rate(f.own, f.cells)}, relative "
            f"{_rate(f.relative, f.relative_cells)}), {_rate(f.asv, f.cells)} by asv compare "
            f"({_within(f.asv, f.cells)})."
        )
    changed = sum(t.single_changed[0] for t in trials) // max(len(levels), 1)
    total = sum(t.single_changed[1] for t in trials) // max(len(levels), 1)
    lines += [
        "",
        f"Single-value figures (flops, bytes, memory, fingerprints, errors) changed: {changed} of {total}.",
        "",
    ]
    return "\n".join(lines)
