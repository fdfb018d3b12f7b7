"""Is a report still true? Staleness from git history, drift from regeneration.

A report is *stale* when a commit after its recorded commit changed the study's package or its
benchmarks (``git log <recorded>..HEAD -- src/perflab/<study>/ benchmarks/bench_<study>.py``):
the tables describe code that is no longer there. It has *drifted* when regenerating it from
its spec and the recorded results does not give the committed ``.md`` byte for byte.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Sequence

from .._asv import PerflabError

ABBREV = 8


def _git(root, *args):
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=60,
            env=os.environ | {"TZ": "UTC"},  # format-local dates in UTC on every machine
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def resolve(root: str, commit: str) -> str | None:
    """The full hash of a commit prefix in the repository at `root`, or ``None``."""
    return _git(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")


@dataclasses.dataclass(frozen=True)
class Staleness:
    """What happened to a study's code after one recorded commit.

    Attributes:
        commit: the recorded commit (full hash, or the prefix when it cannot be resolved).
        short: its abbreviated hash.
        date: its commit date (``YYYY-MM-DD HH:MM UTC``), or ``""``.
        later: abbreviated hashes of the later commits that touched the watched paths.
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

    def describe(self) -> str:
        """``recorded at abcd1234 (date), later changes: a, b`` (or why it cannot be told)."""
        if not self.known:
            return f"recorded at {self.short}, a commit not in this repository's history"
        text = f"recorded at {self.short}" + (f" ({self.date})" if self.date else "")
        if self.later:
            text += f", later changes: {', '.join(self.later)}"
        return text


def staleness(root: str, commit: str, paths: Sequence[str]) -> Staleness:
    """The commits after `commit` that touched `paths`.

    Arguments:
        root: the repository root.
        commit: the recorded commit (hash or prefix).
        paths: the watched paths, relative to `root`.

    Returns:
        The `Staleness`.
    """
    full = resolve(root, commit)
    if full is None:
        return Staleness(commit, commit[:ABBREV], "", (), known=False)
    short = _git(root, "log", "-1", f"--abbrev={ABBREV}", "--format=%h", full) or full[:ABBREV]
    date = _git(
        root, "log", "-1", "--date=format-local:%Y-%m-%d %H:%M UTC", "--format=%cd", full
    ) or ""
    out = _git(root, "log", f"--abbrev={ABBREV}", "--format=%h", f"{full}..HEAD", "--", *paths)
    if out is None:
        return Staleness(full, short, date, (), known=False)
    return Staleness(full, short, date, tuple(out.split()))


def status_text(spec, commits: Sequence[str], root: str = ".") -> str:
    """The report header's Status line for a spec's recorded commits.

    Arguments:
        spec: the `Spec`.
        commits: the full hashes of the recorded commits shown.
        root: the repository root.

    Returns:
        ``stale: recorded at X (date), later changes: a, b`` (one clause per stale commit,
        ``;``-separated), or ``current: ...`` naming the watched paths.
    """
    states = [staleness(root, c, spec.watched) for c in commits]
    stale = [s for s in states if s.stale]
    if stale:
        return "stale: " + "; ".join(s.describe() for s in stale)
    shown = ", ".join(s.short for s in states)
    return f"current: no commit after {shown} changed {' or '.join(spec.watched)}"


def check_spec(spec, results_dir: str, root: str = ".") -> list[str]:
    """What is wrong with one study report: stale, drifted, missing, or not regenerable.

    Arguments:
        spec: the `Spec`.
        results_dir: the asv results directory.
        root: the repository root.

    Returns:
        One line per problem (empty when the report is current and regenerates byte for byte).
    """
    from .spec import NEWEST, build_study, render_study

    problems = []
    try:
        study = build_study(spec, results_dir)
    except PerflabError as err:
        study = None
        problems.append(f"not regenerated: {err.message}")
        # Without results, the commits the spec names can still be checked against git.
        named = [s.commit or spec.commit for s in spec.sections] + [spec.commit]
        commits = list(dict.fromkeys(c for c in named if c != NEWEST))
    else:
        commits = study.commits
    states = [staleness(root, c, spec.watched) for c in commits]
    problems += [f"stale: {s.describe()}" for s in states if s.stale]
    if study is not None:
        text = render_study(study, root)
        try:
            with open(spec.output, encoding="utf-8", newline="") as f:
                committed = f.read()
        except OSError:
            problems.append(f"missing: {spec.output} (run `{spec.command}`)")
        else:
            if committed != text:
                problems.append(
                    f"drifted: {spec.output} differs from its regeneration (run `{spec.command}`)"
                )
    return problems
