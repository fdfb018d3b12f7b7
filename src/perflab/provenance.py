"""Which code is installed, and which commit a run is labelled with: the proof a recorded run
carries of what it timed.

A results file names the commit asv labels it with (`--set-commit-hash`, or the commit asv
built). That label proves nothing by itself: `--python=same` times whatever is installed, an
editable checkout can hold uncommitted edits, a venv can point at another worktree. So the
measuring code asks how perflab was installed (the distribution's PEP 610 ``direct_url.json``)
and compares:

- an editable install: its checkout's HEAD, and whether tracked files other than asv's results
  differ from it (`results/` is left out because asv itself rewrites `results/benchmarks.json`
  when a run starts);
- a built wheel (asv's virtualenv builds, or any non-editable install): the commit and dirty
  flag setup.py wrote into `perflab/_build_info.py` from the checkout it built. A git work tree
  that happens to enclose the environment (asv keeps its environments inside the user's
  checkout) says nothing about the wheel and is never asked.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os

from ._git import git

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
    """How the imported perflab was installed, and which commit it is.

    Returns:
        An `Installed`: an editable install judged by its checkout, anything else by the build
        info its wheel carries.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    if _editable():
        top = git(here, "rev-parse", "--show-toplevel")
        if top is not None:
            return Installed(git(here, "rev-parse", "HEAD"), dirty(top), f"git checkout {top}")
    try:
        from . import _build_info
    except ImportError:
        return Installed(None, False, "a non-editable install without build info")
    return Installed(_build_info.COMMIT or None, bool(_build_info.DIRTY), "build info of the installed wheel")


def _editable() -> bool:
    # PEP 610: pip records how a distribution was installed; an editable one has dir_info.editable.
    # Without the record (a source tree on sys.path, no install at all) the code is its folder's.
    try:
        text = importlib.metadata.distribution("perflab").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return True
    if not text:
        return False
    return bool(json.loads(text).get("dir_info", {}).get("editable", False))


def dirty(top: str) -> bool:
    """Whether tracked files of the work tree `top` differ from its HEAD, asv's results aside.

    Arguments:
        top: a git work tree's top folder.

    Returns:
        True when any tracked file outside ``results/`` is modified, staged or deleted.
    """
    status = git(top, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return bool(status)


def labelled_commit() -> str | None:
    """The commit the running asv command records results under, resolved to a full hash.

    asv sets ASV_COMMIT in the environments it builds; `--python=same` runs get the label
    from the ``--set-commit-hash`` argument of the asv command up this process's tree
    (forkserver, then asv).

    Returns:
        The full hash (or the label as given when git cannot resolve it), or ``None`` outside
        an asv run that records.
    """
    label = os.environ.get("ASV_COMMIT") or _set_commit_hash_argument()
    if not label:
        return None
    where = os.environ.get("ASV_CONF_DIR") or os.getcwd()
    return git(where, "rev-parse", "--verify", f"{label}^{{commit}}") or label


def _set_commit_hash_argument():
    pid = os.getpid()
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            with open(f"/proc/{pid}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        for i, arg in enumerate(args):
            if arg == "--set-commit-hash" and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--set-commit-hash="):
                return arg.split("=", 1)[1]
        if parent <= 1:
            return None
        pid = parent
    return None


def check(label: str | None) -> Installed:
    """Fail unless the installed code is the clean commit `label`.

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
            raise ProvenanceError(message + f". Record the commit that is installed, or set {ALLOW_ENV} to the reason.")
        print(f"perflab provenance: {message}; recorded anyway: {reason}", flush=True)
    return code
