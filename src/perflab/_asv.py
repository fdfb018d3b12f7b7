"""The one reader of asv's files: configuration, machines, results files and benchmarks.json.

The report, the calibration and the dashboard read asv's files only through this module, and
this module reads them only through asv's own loaders (`asv.util.load_json`,
`asv.results.Results`, `asv.machine`, `asv.benchmarks.Benchmarks`), so every number is read
exactly as `asv compare` and `asv publish` read it. The shared error type of the commands lives
here too.

Where results are looked for (`default_results_dir`), first match wins: ``results/`` at the
repository root (the committed results behind the reports), ``results_dir`` of
``asv.conf.json``, then ``.asv/results``.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import os
import platform
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence

from asv import util as asv_util
from asv.benchmarks import Benchmarks
from asv.machine import Machine, MachineCollection, iter_machine_files
from asv.results import Results, get_filename, iter_results_paths

UserError = asv_util.UserError
"""What asv's loaders raise on a missing, malformed or outdated file."""

COMMITTED_RESULTS = "results"
ASV_RESULTS = ".asv/results"


class PerflabError(Exception):
    """A user error of any ``python -m perflab`` command: printed as one line naming the
    argument (or file) at fault, exit status 2.

    Arguments:
        argument: the option or file to blame, e.g. ``"--after"`` or ``"docs/reports/sde.toml"``.
        message: what is wrong and what is available instead.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message


class ReportError(PerflabError):
    """A user error of ``python -m perflab report``."""


def one_line(err: Exception) -> str:
    """`err`'s message on one line: asv wraps its error messages across lines.

    Arguments:
        err: the error, typically asv's `UserError`.

    Returns:
        The message with every run of whitespace made one space.
    """
    return " ".join(str(err).split())


def load_config(path: str) -> dict:
    """Read an ``asv.conf.json`` as asv does (``//`` comments allowed).

    Arguments:
        path: the configuration file.

    Returns:
        The configuration as a dict.

    Raises:
        asv.util.UserError: when the file is missing or not JSON.
    """
    try:
        return asv_util.load_json(path, js_comments=True)
    except ValueError as err:
        # asv's loader lets the JSON parser's error through; it names neither the file nor asv.
        raise UserError(f"{path} is not valid JSON: {err}") from None


def parse_config(text: str) -> dict | None:
    """An ``asv.conf.json`` given as text (e.g. an older commit's), or ``None`` if unreadable."""
    import json5  # what asv's load_json(js_comments=True) parses with

    try:
        data = json5.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def default_results_dir(directory: str = ".") -> str:
    """Where the results are: ``results/`` if present, else asv.conf.json's, else ``.asv/results``.

    Arguments:
        directory: the repository root.

    Returns:
        The results directory path (relative paths resolved against `directory`).
    """
    committed = os.path.join(directory, COMMITTED_RESULTS)
    if os.path.isdir(committed):
        return os.path.normpath(committed)
    results_dir = ASV_RESULTS
    conf_path = os.path.join(directory, "asv.conf.json")
    if os.path.isfile(conf_path):
        results_dir = load_config(conf_path).get("results_dir", results_dir)
    return os.path.normpath(os.path.join(directory, results_dir))


def results_dir_option(given: str | None, error: type[PerflabError]) -> str:
    """The results directory a command's ``--results-dir`` names, or the default one.

    Arguments:
        given: the option's value, or ``None`` when it was not given.
        error: the command's error class, raised naming ``--results-dir`` when the default
            cannot be found because asv cannot read asv.conf.json.

    Returns:
        The results directory path.
    """
    if given:
        return given
    try:
        return default_results_dir()
    except UserError as err:
        raise error("--results-dir", one_line(err)) from None


def current_machine() -> str | None:
    """The machine name `asv run` would record under here (``~/.asv-machine.json``), or ``None``."""
    try:
        info = MachineCollection.load(platform.node())
    except (UserError, OSError, ValueError):
        return None
    return info.get("machine")


def recorded_machines(results_dir: str) -> dict[str, str]:
    """Machine name -> the folder holding its ``machine.json`` and results files.

    Arguments:
        results_dir: an asv results directory.

    Returns:
        One entry per readable ``machine.json``.
    """
    machines = {}
    for path in iter_machine_files(results_dir):
        try:
            info = asv_util.load_json(path, api_version=Machine.api_version)
        except UserError:
            continue
        if isinstance(info.get("machine"), str):
            machines[info["machine"]] = os.path.dirname(path)
    return machines


def load_benchmarks(results_dir: str) -> dict[str, Mapping]:
    """The ``benchmarks.json`` next to the machine folders (parameter names, units), or ``{}``."""
    path = Benchmarks.get_benchmark_file_path(results_dir)
    if not os.path.isfile(path):
        return {}
    benchmarks = asv_util.load_json(path, api_version=Benchmarks.api_version)
    benchmarks.pop("version", None)
    return benchmarks


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


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One benchmark of one results file, as asv's loader returns it, parameters as labels.

    Attributes:
        name: the full benchmark name.
        param_names: from ``benchmarks.json``.
        param_values: each parameter's values as display labels (``'lu'`` becomes ``lu``).
        values: per parameter combination (`itertools.product` order): asv's result.
        stats: per combination: asv's statistics, or ``None``.
        samples: per combination: the recorded samples, or ``None``.
    """

    name: str
    param_names: tuple[str, ...]
    param_values: tuple[tuple[str, ...], ...]
    values: tuple
    stats: tuple
    samples: tuple

    def combinations(self) -> Iterator[tuple[tuple[str, ...], float | None, Mapping | None, list | None]]:
        """(labels, value, stats, samples) for every parameter combination, in asv's order."""
        keys = itertools.product(*self.param_values)
        return zip(keys, self.values, self.stats, self.samples)


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

    results: Results
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

    def duration(self, name: str) -> float | None:
        """The wall time asv recorded for the benchmark or setup_cache key (seconds), if any."""
        return self.results.duration.get(name)

    @property
    def durations(self) -> Mapping[str, float]:
        """Every wall time asv recorded: benchmarks and ``<setup_cache KEY>`` entries."""
        return self.results.duration

    def window(self) -> tuple[float, float] | None:
        """The span the results file's timestamps cover, in milliseconds since the epoch: from the
        first class's setup_cache start (a setup_cache runs just before its class's first
        benchmark) to the last benchmark's end; ``None`` when nothing has a start time. asv keeps
        the start and duration of a benchmark's final round only."""
        spans = []
        for name in self.names:
            start = self.started_at(name)
            if start is None:
                continue
            key = self.info(name).get("setup_cache_key")
            setup = self.durations.get(f"<setup_cache {key}>", 0.0) if key else 0.0
            spans.append((start - 1000 * setup, start + 1000 * (self.duration(name) or 0.0)))
        if not spans:
            return None
        return min(s for s, _ in spans), max(e for _, e in spans)

    @property
    def names(self) -> list[str]:
        """Every benchmark recorded in the results file, sorted."""
        return sorted(self.results.get_all_result_keys())

    @property
    def relative_path(self) -> str:
        """The results file relative to the results directory (``vm/<commit>-<env>.json``)."""
        if not self.results_dir:
            return self.path
        return os.path.relpath(self.path, self.results_dir)

    def info(self, name: str) -> Mapping:
        """The benchmark's ``benchmarks.json`` entry (``{}`` if unknown)."""
        return self.benchmarks.get(name, {})

    def param_names(self, name: str) -> list[str]:
        """The benchmark's parameter names from ``benchmarks.json`` (``[]`` if unknown)."""
        return list(self.info(name).get("param_names") or [])

    def unit(self, name: str) -> str | None:
        """The benchmark's unit from ``benchmarks.json`` (``"seconds"`` for ``time_*``)."""
        return self.info(name).get("unit")

    def recorded(self, name: str) -> Recorded:
        """One benchmark's recorded parameters, values, statistics and samples.

        Arguments:
            name: the full benchmark name.

        Returns:
            The `Recorded` benchmark.

        Raises:
            ReportError: when ``benchmarks.json`` names a different number of parameters.
        """
        params = self.results.get_result_params(name)
        param_names = self.param_names(name)
        if len(param_names) != len(params):
            raise ReportError(
                "--results-dir",
                f"benchmarks.json does not match the recorded parameters of {name} "
                f"({len(param_names)} names, {len(params)} parameters); "
                "run `asv run --bench just-discover` to regenerate it",
            )
        return Recorded(
            name,
            tuple(param_names),
            tuple(tuple(label(v) for v in p) for p in params),
            tuple(self.results.get_result_value(name, params)),
            tuple(self.results.get_result_stats(name, params)),
            tuple(self.results.get_result_samples(name, params)),
        )


def _runs_of(machine_dir, machine):
    # (results or None for a file asv cannot read as results, path)
    for root, filename, _ in iter_results_paths(machine_dir):
        path = os.path.join(root, filename)
        try:
            yield Results.load(path, machine_name=machine), path
        except (UserError, KeyError, TypeError, ValueError):
            yield None, path


def pick_machine(results_dir: str, machine: str | None = None) -> tuple[str, str]:
    """The machine to read and its folder: the one named, else this one, else the only one.

    Arguments:
        results_dir: the asv results directory.
        machine: the asv machine name, or ``None``.

    Returns:
        (machine, machine folder).

    Raises:
        ReportError: when the directory holds no machine, the named one, or several without a
            name (listing them).
    """
    if not os.path.isdir(results_dir):
        raise ReportError("--results-dir", f"no asv results directory at {results_dir!r} (run `asv run` first)")
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
            return here, machines[here]
        if len(machines) == 1:
            return next(iter(machines.items()))
        raise ReportError(
            "--machine",
            f"no results for this machine ({here or 'unknown'}) in {results_dir!r}; pick one of: {known}",
        )
    if machine not in machines:
        raise ReportError(
            "--machine",
            f"no results for machine {machine!r} in {results_dir!r} (recorded: {known})",
        )
    return machine, machines[machine]


def machine_runs(results_dir: str, machine: str | None = None) -> tuple[str, list[RecordedRun]]:
    """Every run recorded for one machine (see `pick_machine`), oldest first.

    Arguments:
        results_dir: the asv results directory.
        machine: the asv machine name, or ``None``.

    Returns:
        (machine, runs).

    Raises:
        ReportError: when the machine cannot be picked or holds no readable results file.
    """
    machine, machine_dir = pick_machine(results_dir, machine)
    loaded = list(_runs_of(machine_dir, machine))
    found = [r for r, _ in loaded if r is not None and r.params.get("machine") == machine]
    if not found:
        foreign = [os.path.basename(p) for r, p in loaded if r is None]
        why = f" ({', '.join(foreign)} not readable as asv results)" if foreign else ""
        raise ReportError(
            "--machine",
            f"no results files for machine {machine!r} in {machine_dir!r}{why} (run `asv run` first)",
        )
    info = asv_util.load_json(os.path.join(machine_dir, "machine.json"), api_version=Machine.api_version)
    benchmarks = load_benchmarks(results_dir)
    runs = [
        RecordedRun(
            results=r,
            path=os.path.join(machine_dir, os.path.basename(get_filename(machine, r.commit_hash, r.env_name))),
            machine=machine,
            machine_info=info,
            benchmarks=benchmarks,
            results_dir=results_dir,
        )
        for r in found
    ]
    return machine, sorted(runs, key=_recency)


def _recency(run):
    started = [t for t in run.results.started_at.values() if t is not None]
    return (run.date or 0, max(started, default=0))


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
    machine, runs = machine_runs(results_dir, machine)
    if commit is not None:
        chosen = [r for r in runs if r.commit.lower().startswith(commit.lower())]
        commits = sorted({r.commit[:8] for r in chosen})
        if not chosen:
            recorded = ", ".join(sorted({r.commit[:8] for r in runs}))
            raise ReportError(
                "--commit",
                f"no results for commit {commit!r} on machine {machine!r} in {results_dir!r} (recorded: {recorded})",
            )
        if len(commits) > 1:
            raise ReportError("--commit", f"{commit!r} matches several commits: {', '.join(commits)}")
        runs = chosen
    if env is not None:
        # An exact name first: one environment's name can be a part of another's.
        chosen = [r for r in runs if r.env_name == env] or [r for r in runs if env in r.env_name]
        if not chosen:
            recorded = ", ".join(sorted({r.env_name for r in runs}))
            raise ReportError("--env", f"{env!r} matches no recorded environment (recorded: {recorded})")
        runs = chosen
    newest = runs[-1]
    chosen = [r for r in runs if r.commit == newest.commit]
    if len(chosen) > 1:
        envs = ", ".join(sorted(r.env_name for r in chosen))
        raise ReportError(
            "--env",
            f"commit {newest.commit[:8]} was recorded in several environments; pick one: {envs}",
        )
    return chosen[0]


def load_only_run(results_dir: str) -> RecordedRun | None:
    """The single run of a results directory of one machine and one commit.

    Arguments:
        results_dir: an asv results directory.

    Returns:
        The run, or ``None`` when the directory holds no results file or several.
    """
    try:
        _, runs = machine_runs(results_dir)
    except ReportError:
        return None
    return runs[0] if len(runs) == 1 else None


def human_value(value: float, unit: str | None) -> str:
    """A value with its unit as asv shows it (``1.23ms``, ``1.5M`` bytes, ``3.2 GFLOP/s``)."""
    text = asv_util.human_value(value, unit or "")
    if unit and unit not in ("seconds", "bytes"):
        text += f" {unit}"
    return text


def asv_compare_flags(a: Sequence[float], b: Sequence[float], factor: float) -> bool:
    """Whether `asv compare` would flag two cells' samples as changed, either direction.

    asv keeps its rule private (`asv.commands.compare._is_result_better`); it is called here,
    in the one module that touches asv's internals, so an asv upgrade that moves it breaks
    one place.

    Arguments:
        a: one cell's samples.
        b: the other cell's samples.
        factor: asv compare's ``--factor``.

    Returns:
        True when asv compare marks the pair better or worse.
    """
    from asv.commands.compare import _is_result_better
    from asv_runner.statistics import compute_stats

    (va, sa), (vb, sb) = compute_stats(a, 1), compute_stats(b, 1)
    return bool(
        _is_result_better(vb, va, (sb, b), (sa, a), factor) or _is_result_better(va, vb, (sa, a), (sb, b), factor)
    )


def run_asv(cmd: Sequence[str], env: dict, argument: str, cwd: str | None = None, allowed=(0,)) -> str:
    """Run one asv command line; fail naming `argument` when it fails or a benchmark failed.

    asv exits 0 when benchmarks fail and reports them in its log, so the log is read too.

    Arguments:
        cmd: the command line (``[python, "-m", "asv", ...]``).
        env: its environment.
        argument: the option to name in the error.
        cwd: its working directory.
        allowed: exit statuses that are not failures (``asv continuous`` exits 1 on a regression).

    Returns:
        asv's output.

    Raises:
        PerflabError: naming `argument`, with the end of asv's output.
    """
    done = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True)
    text = done.stdout + done.stderr
    if done.returncode not in allowed or "failed" in done.stdout.lower():
        said = f"failed (exit {done.returncode}); asv said:\n{text[-3000:]}"
        raise PerflabError(argument, f"{shlex.join(cmd[2:])} {said}")
    return text
