"""Which code is installed: the proof a recorded run carries of what it timed.

A results file names the commit asv labels it with (`--set-commit-hash`, or the commit asv
built). That label proves nothing by itself: `--python=same` times whatever is installed, an
editable checkout can hold uncommitted edits, a venv can point at another worktree. So the
measuring code asks where perflab was imported from and compares:

- an editable checkout (perflab imported from a git work tree): its HEAD, and whether tracked
  files other than asv's results differ from it (`git status --porcelain --untracked-files=no`;
  `results/` is left out because asv itself rewrites `results/benchmarks.json` when a run
  starts);
- a built wheel (asv's virtualenv builds): the commit and dirty flag setup.py wrote into
  `perflab/_build_info.py` when it built the wheel.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess

ALLOW_ENV = "PERFLAB_PROVENANCE_REASON"


class ProvenanceError(RuntimeError):
    """The installed code is not the commit a run is being recorded under."""


@dataclasses.dataclass(frozen=True)
class Installed:
    """What is installed.

    Attributes:
        commit: the full commit hash, or ``None`` when it cannot be told.
        dirty: tracked files differ from `commit`.
        source: where that was read (the checkout's path, or the wheel's build info).
    """

    commit: str | None
    dirty: bool
    source: str


def installed() -> Installed:
    """Where the imported perflab comes from, and which commit it is.

    Returns:
        An `Installed`.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    top = _git(here, "rev-parse", "--show-toplevel")
    if top is not None:
        commit = _git(here, "rev-parse", "HEAD")
        return Installed(commit, dirty(top), f"git checkout {top}")
    try:
        from . import _build_info
    except ImportError:
        return Installed(None, False, "no git checkout and no build info")
    return Installed(_build_info.COMMIT or None, bool(_build_info.DIRTY), "build info of the installed wheel")


def dirty(top: str) -> bool:
    """Whether tracked files of the work tree `top` differ from its HEAD, asv's results aside.

    Arguments:
        top: a git work tree's top folder.

    Returns:
        True when any tracked file outside ``results/`` is modified, staged or deleted.
    """
    status = _git(top, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return bool(status)


def check(label: str | None) -> Installed:
    """Fail unless the installed code is the clean commit `label` (asv's ASV_COMMIT).

    Arguments:
        label: the commit the run is recorded under; ``None`` (not an asv run) checks nothing.

    Returns:
        What is installed.

    Raises:
        ProvenanceError: on a mismatch or uncommitted edits, unless PERFLAB_PROVENANCE_REASON
            states why the run is deliberate (the reason is printed).
    """
    code = installed()
    if not label:
        return code
    problems = []
    if code.commit is None:
        problems.append(f"the installed perflab's commit cannot be told ({code.source})")
    elif not code.commit.startswith(label) and not label.startswith(code.commit):
        problems.append(f"the installed perflab is commit {code.commit[:8]} ({code.source})")
    if code.dirty:
        problems.append(f"the installed perflab has uncommitted changes ({code.source})")
    if problems:
        message = f"this run is recorded as commit {label[:8]}, but " + "; ".join(problems)
        reason = os.environ.get(ALLOW_ENV)
        if not reason:
            raise ProvenanceError(
                message + f". Record the commit that is installed, or set {ALLOW_ENV} to the reason."
            )
        print(f"perflab provenance: {message}; recorded anyway: {reason}", flush=True)
    return code


def _git(where, *args):
    try:
        out = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
