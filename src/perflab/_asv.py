"""The one place that reads asv's files: configuration, machines, results, benchmarks.json.

Everything goes through asv's own loaders (`asv.util.load_json`, `asv.results.Results`,
`asv.machine`, `asv.benchmarks.Benchmarks`) so the files are read exactly as `asv compare`
and `asv publish` read them. The shared error type of the commands lives here too.

Where results are looked for (`default_results_dir`), first match wins:

1. ``results/`` at the repository root: the committed results behind the reports (DESIGN.md:
   "results/<machine>/ committed asv result JSON behind every report"). The report reads them
   from there without `asv.conf.json` having to point ``results_dir`` at them, so `asv run`
   can keep writing scratch results to ``.asv/results`` and a run worth reporting is copied
   (machine folder as asv writes it, plus ``benchmarks.json``) into ``results/``.
2. ``results_dir`` of ``asv.conf.json``, when it names one.
3. ``.asv/results``, asv's default here.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator, Mapping

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


def load_config(path: str) -> dict:
    """Read an ``asv.conf.json`` as asv does (``//`` comments allowed).

    Arguments:
        path: the configuration file.

    Returns:
        The configuration as a dict.

    Raises:
        asv.util.UserError: when the file is missing or not JSON.
    """
    return asv_util.load_json(path, js_comments=True)


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


def current_machine() -> str | None:
    """The machine name `asv run` would record under here, from ``~/.asv-machine.json``.

    Returns:
        The name, or ``None`` when asv has no machine information stored.
    """
    try:
        info = MachineCollection.load(platform.node())
    except (UserError, OSError, ValueError):
        return None
    return info.get("machine")


def recorded_machines(results_dir: str) -> dict[str, str]:
    """The machines with a ``machine.json`` in `results_dir`.

    Arguments:
        results_dir: an asv results directory.

    Returns:
        machine name -> the directory holding its ``machine.json`` and results files.
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


def load_machine_info(machine_dir: str) -> dict:
    """A machine's ``machine.json`` (cpu, arch, os, ram, num_cpu, ...)."""
    return asv_util.load_json(
        os.path.join(machine_dir, "machine.json"), api_version=Machine.api_version
    )


def iter_runs(machine_dir: str, machine: str) -> Iterator[tuple[Results | None, str]]:
    """Every results file of one machine, loaded with asv's `Results.load`.

    Arguments:
        machine_dir: the machine's directory.
        machine: the machine name.

    Yields:
        (results, path): the loaded results, or ``None`` with the path of a file asv cannot
        read as results (a foreign or outdated JSON file).
    """
    for root, filename, _ in iter_results_paths(machine_dir):
        path = os.path.join(root, filename)
        try:
            results = Results.load(path, machine_name=machine)
        except (UserError, KeyError, TypeError, ValueError):
            yield None, path
            continue
        yield results, path


def load_benchmarks(results_dir: str) -> dict[str, Mapping]:
    """The ``benchmarks.json`` next to the machine folders (parameter names, units), or ``{}``."""
    path = Benchmarks.get_benchmark_file_path(results_dir)
    if not os.path.isfile(path):
        return {}
    benchmarks = asv_util.load_json(path, api_version=Benchmarks.api_version)
    benchmarks.pop("version", None)
    return benchmarks


def results_path(machine_dir: str, machine: str, commit: str, env: str) -> str:
    """The path asv gives the results file of (machine, commit, environment)."""
    return os.path.join(machine_dir, os.path.basename(get_filename(machine, commit, env)))


def recorded_benchmarks(results: Results) -> list[str]:
    """The names of the benchmarks a results file holds, sorted."""
    return sorted(results.get_all_result_keys())


def result_arrays(results: Results, name: str):
    """One benchmark's recorded parameters and, per parameter combination, value, stats, samples.

    Arguments:
        results: asv's results object.
        name: the full benchmark name.

    Returns:
        (params, values, stats, samples): asv's parameter value lists (as reprs) and three
        lists in `itertools.product(*params)` order.
    """
    params = results.get_result_params(name)
    return (
        params,
        results.get_result_value(name, params),
        results.get_result_stats(name, params),
        results.get_result_samples(name, params),
    )


def human_value(value: float, unit: str | None) -> str:
    """A value with its unit as asv shows it (``1.23ms``, ``1.5M`` bytes, ``3.2 GFLOP/s``)."""
    text = asv_util.human_value(value, unit or "")
    if unit and unit not in ("seconds", "bytes"):
        text += f" {unit}"
    return text
