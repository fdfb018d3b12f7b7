"""Finding recorded results: machines, commits and environments, and loading one run.

Results directory layout (asv's): ``<results_dir>/benchmarks.json`` (parameter names and units)
and ``<results_dir>/<machine>/machine.json`` next to one ``<commit[:8]>-<env>.json`` per commit
and environment. Where the directory is by default: see `perflab._asv.default_results_dir`.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import itertools
import os
from collections.abc import Mapping, Sequence

from .. import _asv
from .._asv import ReportError, default_results_dir
from .compare import Cell

__all__ = [
    "RecordedRun", "load_run", "match_benchmarks", "recorded_machines", "current_machine",
    "default_results_dir", "short_name", "label",
]

recorded_machines = _asv.recorded_machines
current_machine = _asv.current_machine


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """The results of one machine, commit and environment, with their metadata.

    Attributes:
        results: asv's `Results` object loaded from the results file.
        path: the results file.
        machine: the asv machine name.
        machine_info: the machine's ``machine.json`` (cpu, arch, os, ram, num_cpu, ...).
        benchmarks: the ``benchmarks.json`` entries (param_names, unit, ...) by name.
        results_dir: the results directory the run was found in.
    """

    results: object
    path: str
    machine: str
    machine_info: Mapping[str, str]
    benchmarks: Mapping[str, Mapping]
    results_dir: str = ""

    @property
    def commit(self) -> str:
        """The full commit hash."""
        return self.results.commit_hash

    @property
    def env_name(self) -> str:
        """asv's environment name."""
        return self.results.env_name

    @property
    def date(self) -> int | None:
        """The commit's date as asv stores it (milliseconds since the epoch), if recorded."""
        return self.results.date

    @property
    def python(self) -> str | None:
        """The Python asv recorded for the environment."""
        return self.results.params.get("python")

    def started_at(self, name: str) -> int | None:
        """When asv started the benchmark (milliseconds since the epoch), if recorded."""
        return self.results.started_at.get(name)

    @property
    def names(self) -> list[str]:
        """Every benchmark recorded in the results file, sorted."""
        return _asv.recorded_benchmarks(self.results)

    @property
    def relative_path(self) -> str:
        """The results file relative to the results directory (``vm/<commit>-<env>.json``)."""
        if not self.results_dir:
            return self.path
        return os.path.relpath(self.path, self.results_dir)

    def param_names(self, name: str) -> list[str]:
        """The benchmark's parameter names from ``benchmarks.json`` (``[]`` if unknown)."""
        return list(self.benchmarks.get(name, {}).get("param_names") or [])

    def cells(self, name: str) -> tuple[list[str], list[list[str]], dict[tuple[str, ...], Cell]]:
        """Every cell of one benchmark.

        Arguments:
            name: the full benchmark name, e.g. ``"bench_linear_solve.LinearSolveJVP.time_jvp"``.

        Returns:
            (param_names, param_values, cells): the parameter names, each parameter's values as
            display labels (``'lu'`` becomes ``lu``), and label tuple -> `Cell`.
        """
        params, values, stats, samples = _asv.result_arrays(self.results, name)
        param_names = self.param_names(name)
        if len(param_names) != len(params):
            raise ReportError(
                "--results-dir",
                f"benchmarks.json does not match the recorded parameters of {name} "
                f"({len(param_names)} names, {len(params)} parameters); "
                "run `asv run --bench just-discover` to regenerate it",
            )
        # One class of one recorded run measured its cells in the same processes, in order.
        group = None
        if self.benchmarks.get(name, {}).get("paired_processes"):
            group = f"{self.path}::{name.rsplit('.', 1)[0]}"
        cells = {}
        for combo, value, stat, sample in zip(itertools.product(*params), values, stats, samples):
            key = tuple(label(p) for p in combo)
            cells[key] = Cell(value, stat, tuple(sample) if sample is not None else None, group)
        return param_names, [[label(v) for v in p] for p in params], cells

    def control(self, name: str) -> tuple[str, str] | None:
        """(baseline, control) variant names of an interleaved benchmark, from benchmarks.json."""
        info = self.benchmarks.get(name, {})
        if info.get("baseline") and info.get("control"):
            return info["baseline"], info["control"]
        return None

    def unit(self, name: str) -> str | None:
        """The benchmark's unit from ``benchmarks.json`` (``"seconds"`` for ``time_*``)."""
        return self.benchmarks.get(name, {}).get("unit")


def label(param_repr: str) -> str:
    """A parameter value as shown: asv stores values as their repr(); strings lose the quotes."""
    try:
        value = ast.literal_eval(param_repr)
    except (ValueError, SyntaxError):
        return param_repr
    return value if isinstance(value, str) else param_repr


def short_name(name: str) -> str:
    """``Class.method`` of asv's ``module.Class.method`` (the module repeats in every title)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else name


def load_run(
    results_dir: str,
    machine: str | None = None,
    commit: str | None = None,
    env: str | None = None,
) -> RecordedRun:
    """Load one recorded run: a machine's newest commit unless told otherwise.

    Arguments:
        results_dir: the asv results directory.
        machine: the asv machine name; default: this machine (``~/.asv-machine.json``) if it
            has results, else the only machine that has.
        commit: a commit hash prefix; default: the newest commit recorded (by commit date, then
            by when it was benchmarked).
        env: an asv environment name (or a unique part of one); required only when the commit
            was recorded in several environments.

    Returns:
        The `RecordedRun`.

    Raises:
        ReportError: when the directory, machine, commit or environment cannot be found, or
            the files there are not asv results.
    """
    if not os.path.isdir(results_dir):
        raise ReportError(
            "--results-dir", f"no asv results directory at {results_dir!r} (run `asv run` first)"
        )
    machines = recorded_machines(results_dir)
    if not machines:
        raise ReportError(
            "--results-dir",
            f"no asv results in {results_dir!r}: no <machine>/machine.json "
            "(an asv results directory holds one folder per machine)",
        )
    known = ", ".join(sorted(machines))
    if machine is None:
        here = current_machine()
        if here in machines:
            machine = here
        elif len(machines) == 1:
            machine = next(iter(machines))
        else:
            raise ReportError(
                "--machine",
                f"no results for this machine ({here or 'unknown'}) in {results_dir!r}; "
                f"pick one of: {known}",
            )
    elif machine not in machines:
        raise ReportError(
            "--machine",
            f"no results for machine {machine!r} in {results_dir!r} (recorded: {known})",
        )

    machine_dir = machines[machine]
    loaded = list(_asv.iter_runs(machine_dir, machine))
    runs = [r for r, _ in loaded if r is not None and r.params.get("machine") == machine]
    if not runs:
        foreign = [os.path.basename(p) for r, p in loaded if r is None]
        why = f" ({', '.join(foreign)} not readable as asv results)" if foreign else ""
        raise ReportError(
            "--machine",
            f"no results files for machine {machine!r} in {machine_dir!r}{why} "
            "(run `asv run` first)",
        )
    if commit is not None:
        chosen = [r for r in runs if r.commit_hash.lower().startswith(commit.lower())]
        commits = sorted({r.commit_hash[:8] for r in chosen})
        if not chosen:
            recorded = ", ".join(sorted({r.commit_hash[:8] for r in runs}))
            raise ReportError(
                "--commit",
                f"no results for commit {commit!r} on machine {machine!r} in {results_dir!r} "
                f"(recorded: {recorded})",
            )
        if len(commits) > 1:
            raise ReportError(
                "--commit", f"{commit!r} matches several commits: {', '.join(commits)}"
            )
        runs = chosen
    if env is not None:
        # An exact name first: one environment's name can be a part of another's.
        chosen = [r for r in runs if r.env_name == env] or [r for r in runs if env in r.env_name]
        if not chosen:
            recorded = ", ".join(sorted({r.env_name for r in runs}))
            raise ReportError(
                "--env", f"{env!r} matches no recorded environment (recorded: {recorded})"
            )
        runs = chosen
    newest = max(runs, key=_recency)
    chosen = [r for r in runs if r.commit_hash == newest.commit_hash]
    if len(chosen) > 1:
        envs = ", ".join(sorted(r.env_name for r in chosen))
        raise ReportError(
            "--env",
            f"commit {newest.commit_hash[:8]} was recorded in several environments; "
            f"pick one: {envs}",
        )
    results = chosen[0]
    return RecordedRun(
        results=results,
        path=_asv.results_path(machine_dir, machine, results.commit_hash, results.env_name),
        machine=machine,
        machine_info=_asv.load_machine_info(machine_dir),
        benchmarks=_asv.load_benchmarks(results_dir),
        results_dir=results_dir,
    )


def _recency(results):
    started = [t for t in results.started_at.values() if t is not None]
    return (results.date or 0, max(started, default=0))


def match_benchmarks(run: RecordedRun, patterns: Sequence[str]) -> list[str]:
    """The recorded benchmarks named by `patterns`, in the patterns' order.

    A pattern matches a benchmark when it equals a run of whole dotted components of the full
    name (``LinearSolveJVP`` matches every method of that class, not ``LinearSolveJVPDefault``;
    ``LinearSolveJVP.time_jvp`` matches ``bench_linear_solve.LinearSolveJVP.time_jvp``), or,
    when it holds ``*``, ``?`` or ``[``, matches the name or a dotted tail of it as a glob.

    Arguments:
        run: the recorded run.
        patterns: the ``--benchmark`` values.

    Returns:
        Full benchmark names, without duplicates.

    Raises:
        ReportError: when a pattern matches no recorded benchmark.
    """
    names = []
    for pattern in patterns:
        names.extend(n for n in match_one(run, pattern) if n not in names)
    return names


def match_one(run: RecordedRun, pattern: str) -> list[str]:
    """The recorded benchmarks one pattern names (see `match_benchmarks`); error if none."""
    recorded = run.names
    found = [name for name in recorded if _matches(name, pattern)]
    if not found:
        shown = ", ".join(short_name(n) for n in recorded[:12])
        shown += ", ..." if len(recorded) > 12 else ""
        raise ReportError(
            "--benchmark",
            f"no recorded benchmark matches {pattern!r} in {run.path} "
            f"(machine {run.machine}, commit {run.commit[:8]}; recorded: {shown or 'none'})",
        )
    return found


def _matches(name, pattern):
    parts = name.split(".")
    is_glob = any(c in pattern for c in "*?[")
    wanted = pattern.split(".")
    for start in range(len(parts)):
        tail = parts[start:]
        if is_glob:
            if fnmatch.fnmatchcase(".".join(tail), pattern):
                return True
        elif tail[: len(wanted)] == wanted:
            return True
    return False
