"""Asking git about the repository: one small helper every command shares."""

from __future__ import annotations

import os
import subprocess

ABBREV = 8


def git(root: str, *args: str) -> str | None:
    """The stripped output of ``git ARGS`` run in `root`, or ``None`` when git fails.

    Arguments:
        root: the repository root (or any folder inside it).
        args: git's arguments, e.g. ``("rev-parse", "HEAD")``.

    Returns:
        The output without surrounding whitespace, or ``None`` when git is missing, times
        out or exits with a non-zero status.
    """
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ | {"TZ": "UTC"},  # format-local dates in UTC on every machine
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def resolve(root: str, revision: str) -> str | None:
    """The full hash of a commit named by any git revision (``HEAD~1``, a hash prefix, a tag).

    Arguments:
        root: the repository root.
        revision: what to resolve.

    Returns:
        The full commit hash, or ``None`` when it names no commit of this repository.
    """
    return git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
