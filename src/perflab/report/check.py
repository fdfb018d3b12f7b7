"""Checks: is a study report still true? Staleness from git history, drift from regeneration.

A report is *stale* when a commit after its recorded commit changed what it measured: the
study's package or benchmarks, the measuring harness (``benchmarks/common.py`` and the
``benchmarks/_*.py`` modules), or the versions pinned in ``asv.conf.json``'s ``matrix``. It
has *drifted* when its regeneration differs from the committed ``.md``. This module only
checks; the pipeline (`perflab.report.pipeline`) regenerates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .. import _asv
from .._git import ABBREV, git, resolve

HARNESS = ("benchmarks/common.py", "benchmarks/_*.py")
"""The measuring harness every study's figures pass through (a git pathspec glob)."""
CONFIG = "asv.conf.json"


def study_paths(study: str) -> tuple[str, str]:
    """The study's own code: its package and its benchmark module."""
    return (f"src/perflab/{study}/", f"benchmarks/bench_{study}.py")


@dataclasses.dataclass(frozen=True)
class Staleness:
    """What happened to a study's code after one recorded commit.

    Attributes:
        commit: the recorded commit (full hash, or the prefix when it cannot be resolved).
        short: its abbreviated hash.
        date: its commit date (``YYYY-MM-DD HH:MM UTC``), or ``""``.
        later: abbreviated hashes of the later commits that changed what was measured.
        known: False when the commit is not in this repository's history.
    """

    commit: str
    short: str
    date: str
    later: tuple[str, ...]
    known: bool = True

    @property
    def stale(self) -> bool:
        """Stale: changed since, or not checkable against the history."""
        return bool(self.later) or not self.known

    def summary(self) -> str:
        """``recorded at abcd1234 (date), later changes: a, b`` (or why it cannot be told)."""
        if not self.known:
            return f"recorded at {self.short}, a commit not in this repository's history"
        text = f"recorded at {self.short}" + (f" ({self.date})" if self.date else "")
        if self.later:
            text += f", later changes: {', '.join(self.later)}"
        return text


def staleness(root: str, commit: str, study: str) -> Staleness:
    """The commits after `commit` that changed the study, the harness or the pinned versions.

    Arguments:
        root: the repository root.
        commit: the recorded commit (hash or prefix).
        study: the study's name.

    Returns:
        The `Staleness`.
    """
    full = resolve(root, commit)
    if full is None:
        return Staleness(commit, commit[:ABBREV], "", (), known=False)
    short = git(root, "log", "-1", f"--abbrev={ABBREV}", "--format=%h", full) or full[:ABBREV]
    date = git(root, "log", "-1", "--date=format-local:%Y-%m-%d %H:%M UTC", "--format=%cd", full) or ""
    log = ("log", f"--abbrev={ABBREV}", "--format=%h", f"{full}..HEAD", "--")
    code = git(root, *log, *study_paths(study), *HARNESS)
    config = git(root, *log, CONFIG)
    if code is None or config is None:
        return Staleness(full, short, date, (), known=False)
    changed = set(code.split()) | {c for c in config.split() if _matrix_changed(root, c)}
    every = git(root, *log, *study_paths(study), *HARNESS, CONFIG) or ""
    return Staleness(full, short, date, tuple(c for c in every.split() if c in changed))


def _matrix(root, revision):
    text = git(root, "show", f"{revision}:{CONFIG}")
    conf = _asv.parse_config(text) if text is not None else None
    return conf.get("matrix") if conf else None


def _matrix_changed(root, commit):
    # Only the pinned versions change what was measured; other settings of asv.conf.json do not.
    return _matrix(root, commit) != _matrix(root, f"{commit}^")


MEASURED = ("benchmarks/", "src/perflab/", "setup.py", "pyproject.toml", ":(exclude)src/perflab/report/")
"""What a benchmark run measures (a git pathspec): the suite, the library and its build, but
not the report code, which reads results and never runs in a measuring process."""


def measured_changes(root: str, a: str, b: str) -> list[str] | None:
    """The paths whose change between two commits changes what the suite measures.

    Arguments:
        root: the repository root.
        a, b: the two commits (any git revision).

    Returns:
        The changed paths of `MEASURED`, and ``asv.conf.json (matrix)`` when the pinned
        versions differ; empty when the benchmarked code is identical; ``None`` when git cannot
        tell (a commit unknown here).
    """
    changed = git(root, "diff", "--name-only", a, b, "--", *MEASURED)
    if changed is None:
        return None
    paths = changed.split()
    if _matrix(root, a) != _matrix(root, b):
        paths.append(f"{CONFIG} (matrix)")
    return paths


def changed_areas(root: str, a: str, b: str) -> list[str] | None:
    """What two commits differ in, by top-level file or folder (``docs/``, ``README.md``), with
    ``src/perflab/report/`` named on its own; ``None`` when git cannot tell."""
    changed = git(root, "diff", "--name-only", a, b)
    if changed is None:
        return None
    areas = []
    for path in changed.split():
        head, sep, _ = path.partition("/")
        area = "src/perflab/report/" if path.startswith("src/perflab/report/") else head + sep
        if area not in areas:
            areas.append(area)
    return sorted(areas)


def status_text(study: str, states: Sequence[Staleness]) -> str:
    """The report header's Status line.

    Arguments:
        study: the study's name.
        states: the `Staleness` of every recorded commit shown.

    Returns:
        ``stale: recorded at X (date), later changes: a, b`` (one clause per stale commit,
        ``;``-separated), or ``current: ...`` naming the study's watched paths.
    """
    stale = [s for s in states if s.stale]
    if stale:
        return "stale: " + "; ".join(s.summary() for s in stale)
    shown = ", ".join(s.short for s in states)
    return f"current: no commit after {shown} changed {' or '.join(study_paths(study))}"


def drift(path: str, text: str, command: str) -> str | None:
    """Whether the committed report at `path` differs from its regeneration `text`.

    Arguments:
        path: the committed ``.md``.
        text: its regeneration.
        command: the command that regenerates it.

    Returns:
        The problem line (``missing: ...`` or ``drifted: ...``), or ``None`` when identical.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            committed = f.read()
    except OSError:
        return f"missing: {path} (run `{command}`)"
    if committed != text:
        return f"drifted: {path} differs from its regeneration (run `{command}`)"
    return None
