"""Specs: parsing and validating ``docs/reports/<study>.toml``, and finding them.

First stage of the report (**spec** -> load -> cells -> comparisons -> tables -> render). A
spec names the recorded commit, the sections (benchmarks, BEFORE/AFTER, extra variants, row
parameters) and the prose of one study's report; `perflab.report.pipeline` turns it and the
recorded results into ``docs/reports/<study>.md``, byte for byte the same on every machine
that has the results.

Format (every key but ``title`` and the sections' ``heading`` optional)::

    title = "Study 2 report: SDE ensembles"
    commit = "66ea2d59"          # the recorded commit (a hash prefix), or "newest"
    machine = "vm"               # asv machine name (default: the only one recorded)
    env = "existing"             # asv environment (a unique part), when several recorded
    factor = 1.05                # the factor of the "~ within noise" mark
    prose = \"\"\"Markdown under the title.\"\"\"

    [[sections]]
    heading = "1. The user's table"
    benchmarks = ["EnsembleSimulation.time_simulate"]
    before = "pregen"            # default: the baseline benchmarks.json records
    after = "auto"               # default: the optimised variant benchmarks.json records
    extra = ["chunked"]
    rows = ["n_traj", "n_steps"] # default: size, else every non-variant parameter
    commit = "4a9d6a67"          # this section's recorded commit, when not the spec's
    machine = "gpu-h200"         # this section's machine, when not the spec's (its newest run;
                                 # no results folder: "not recorded yet")
    prose = \"\"\"Markdown under the heading.\"\"\"

    [[claims]]                   # and [[goals]]: judged in the report's Verdicts section
    name = "..."                 # (see `perflab.report.verdicts` for every key)
    text = "..."
    benchmark = "EnsembleSimulation.track_simulate"
    where = { n_traj = ["100", "1000"], n_steps = ["1000", "10000"] }
    before = "pregen"
    after = "auto"
    speedup = "between 0.6173 and 0.6897"

A section without benchmarks is prose only. A benchmark of a recorded class that the section's
run lacks (added or renamed since) renders "not recorded" and fails ``report --check``. Prose
may quote a recorded value as ``{cell:Class.method[param=value,...]}`` (e.g.
``{cell:DeltaRule.time_forward[config=medium, variant=cython]}``), filled from the section's
run (the spec's run for the top prose) with asv's unit formatting; type no figure into prose by
hand.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Sequence
from typing import NoReturn

from .._asv import ReportError
from ..significance import DEFAULT_FACTOR
from . import verdicts

SPEC_DIR = os.path.join("docs", "reports")
NEWEST = "newest"
_TOP_KEYS = {"title", "commit", "machine", "env", "factor", "prose", "sections", *verdicts.KINDS}
_SECTION_KEYS = {"heading", "benchmarks", "before", "after", "extra", "rows", "commit", "env", "prose", "machine"}


@dataclasses.dataclass(frozen=True)
class Section:
    """One section of a study report: a heading, optional prose, optional tables.

    Attributes:
        heading: the section's heading.
        benchmarks: benchmark names or patterns (see `perflab.report.cells.select`); empty: prose only.
        before: the BEFORE variant, or ``None`` for the recorded ``baseline``.
        after: the AFTER variant, or ``None`` for the recorded ``optimised`` variant.
        extra: further variants shown as columns.
        rows: the row parameters, or ``None`` for the default.
        commit: this section's recorded commit, or ``None`` for the spec's.
        env: this section's environment, or ``None`` for the spec's.
        prose: Markdown shown under the heading.
        machine: this section's machine, or ``None`` for the spec's (a machine with no recorded
            results renders "not recorded yet").
    """

    heading: str
    benchmarks: tuple[str, ...] = ()
    before: str | None = None
    after: str | None = None
    extra: tuple[str, ...] = ()
    rows: tuple[str, ...] | None = None
    commit: str | None = None
    env: str | None = None
    prose: str = ""
    machine: str | None = None


@dataclasses.dataclass(frozen=True)
class Spec:
    """One study's report spec (see the module docstring for the file format).

    Attributes:
        study: the study's name (the file's stem), e.g. ``"sde"``.
        path: the spec file.
        title: the report's title.
        commit: the recorded commit (hash prefix) or ``"newest"``.
        machine: the asv machine name, or ``None``.
        env: the asv environment, or ``None``.
        factor: the factor of the "~ within noise" mark.
        prose: Markdown under the title.
        sections: the sections, in order.
        criteria: the ``[[claims]]`` and ``[[goals]]`` (`perflab.report.verdicts.Criterion`).
    """

    study: str
    path: str
    title: str
    commit: str = NEWEST
    machine: str | None = None
    env: str | None = None
    factor: float = DEFAULT_FACTOR
    prose: str = ""
    sections: tuple[Section, ...] = ()
    criteria: tuple[verdicts.Criterion, ...] = ()

    @property
    def output(self) -> str:
        """The generated report: the spec's path with ``.md``."""
        return os.path.splitext(self.path)[0] + ".md"

    @property
    def command(self) -> str:
        """The command that regenerates the report."""
        return f"python -m perflab report --study {self.study}"

    def where(self, section: Section) -> tuple[str | None, str | None]:
        """(commit or ``None`` for the newest, env) of a section."""
        commit = section.commit or self.commit
        return (None if commit == NEWEST else commit), (section.env or self.env)


def _fail(path, message) -> NoReturn:
    # Every spec error names the file first, as the command line prints it.
    raise ReportError(path, message)


def _strings(path, where, key, value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _fail(path, f"{where}{key} must be a list of names, got {value!r}")
    return tuple(value)


def _string(path, where, key, value) -> str | None:
    if value is not None and not isinstance(value, str):
        _fail(path, f"{where}{key} must be a string, got {value!r}")
    return value


def _text(path, where, key, value) -> str:
    if not isinstance(value, str):
        _fail(path, f"{where}{key} must be a string, got {value!r}")
    return value


def load_spec(path: str) -> Spec:
    """Read and check one spec file.

    Arguments:
        path: ``docs/reports/<study>.toml``.

    Returns:
        The `Spec`.

    Raises:
        ReportError: naming the file and the key at fault.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        _fail(path, f"cannot read the spec: {err.strerror}")
    except tomllib.TOMLDecodeError as err:
        _fail(path, f"not valid TOML: {err}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP_KEYS))})")
    if not isinstance(data.get("title"), str) or not data["title"]:
        _fail(path, "needs a title")
    sections = []
    raw_sections = data.get("sections", [])
    if not isinstance(raw_sections, list) or not raw_sections:
        _fail(path, "needs at least one [[sections]] table")
    for i, raw in enumerate(raw_sections, 1):
        where = f"section {i}: "
        if not isinstance(raw, dict):
            _fail(path, f"{where}not a table")
        unknown = sorted(set(raw) - _SECTION_KEYS)
        if unknown:
            _fail(path, f"{where}unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_SECTION_KEYS))})")
        if not isinstance(raw.get("heading"), str) or not raw["heading"]:
            _fail(path, f"{where}needs a heading")
        rows = raw.get("rows")
        sections.append(
            Section(
                heading=raw["heading"],
                benchmarks=_strings(path, where, "benchmarks", raw.get("benchmarks", [])),
                before=_string(path, where, "before", raw.get("before")),
                after=_string(path, where, "after", raw.get("after")),
                extra=_strings(path, where, "extra", raw.get("extra", [])),
                rows=None if rows is None else _strings(path, where, "rows", rows),
                commit=_string(path, where, "commit", raw.get("commit")),
                machine=_string(path, where, "machine", raw.get("machine")),
                env=_string(path, where, "env", raw.get("env")),
                prose=_text(path, where, "prose", raw.get("prose", "")),
            )
        )
    factor = data.get("factor", DEFAULT_FACTOR)
    if not isinstance(factor, (int, float)) or not factor >= 1.0:
        _fail(path, f"factor must be a number of at least 1.0, got {factor!r}")
    return Spec(
        study=os.path.splitext(os.path.basename(path))[0],
        path=path,
        title=data["title"],
        commit=_text(path, "", "commit", data.get("commit", NEWEST)),
        machine=_string(path, "", "machine", data.get("machine")),
        env=_string(path, "", "env", data.get("env")),
        factor=float(factor),
        prose=_text(path, "", "prose", data.get("prose", "")),
        sections=tuple(sections),
        criteria=verdicts.parse_criteria(path, data),
    )


def discover_specs(root: str = ".") -> dict[str, str]:
    """study -> spec path for every ``docs/reports/*.toml`` under `root`, sorted by study."""
    directory = os.path.join(root, SPEC_DIR)
    if not os.path.isdir(directory):
        return {}
    names = sorted(n for n in os.listdir(directory) if n.endswith(".toml"))
    return {n[: -len(".toml")]: os.path.normpath(os.path.join(directory, n)) for n in names}


def load_specs(root: str, studies: Sequence[str] | None = None) -> list[Spec]:
    """The specs of `studies` (default: every ``docs/reports/*.toml``) under `root`.

    Raises:
        ReportError: naming ``--study`` when a study has no spec.
    """
    found = discover_specs(root)
    if studies is None:
        return [load_spec(p) for p in found.values()]
    missing = [s for s in studies if s not in found]
    if missing:
        raise ReportError(
            "--study",
            f"no spec {os.path.join(SPEC_DIR, missing[0] + '.toml')} (specs: {', '.join(found) or 'none'})",
        )
    return [load_spec(found[s]) for s in studies]
