"""Calibration across commits: two commits built by asv and compared with its interleaved rounds.

`python -m perflab calibrate --across-commits` clones the repository at HEAD into a scratch
folder and adds one commit on top of it:

- ``identical``: a docs-only commit (A/A): the benchmarked code is the same, so every flag by
  the two-commit rule or by asv compare's is false;
- ``slower``: a commit that adds ``perflab/_calibration_slowdown.py`` (``FRACTION = 0.10``), so
  the measuring code slows one variant of every class (its optimised one, else the first that
  is not the baseline) by that fraction of its own measured time: flags on that variant's
  timings are detections, flags elsewhere are false.

Each trial is one ``asv continuous HEAD~1 HEAD`` of the scratch clone (each commit built in
its own virtualenv, rounds interleaved), judged by `perflab.report.commits` (the project's
two-commit rule) and by asv compare's own rule at the same factor. Every rate carries a
Clopper-Pearson interval.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from . import _asv, significance
from ._git import git
from .report import commits

KINDS = ("identical", "slower")
SLOWDOWN = 0.10


@dataclasses.dataclass
class CommitTrial:
    """One judged trial: counts per class, for the two rules.

    Attributes:
        kind: ``"identical"`` or ``"slower"``.
        false: class -> [flagged by the two-commit rule, by asv's rule, cells]: timings of
            variants that did not change.
        detected: class -> [flagged, by asv's rule, cells]: timings of the slowed variant.
        single_changed: single-value figures that differ between the commits (of how many).
    """

    kind: str
    false: dict = dataclasses.field(default_factory=dict)
    detected: dict = dataclasses.field(default_factory=dict)
    single_changed: list = dataclasses.field(default_factory=lambda: [0, 0])


def _scratch_commit(repo, kind):
    if kind == "identical":
        with open(os.path.join(repo, "README.md"), "a", encoding="utf-8") as fh:
            fh.write("\n")
        message = "calibration: docs only"
    else:
        path = os.path.join(repo, "src", "perflab", "_calibration_slowdown.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f'"""A calibration commit: one variant of every class made slower."""\n\nFRACTION = {SLOWDOWN}\n')
        message = f"calibration: one variant {SLOWDOWN:.0%} slower"
    for args in (("add", "-A"), ("-c", "user.name=calibrate", "-c", "user.email=c@c", "commit", "-qm", message)):
        if git(repo, *args) is None:
            raise _asv.PerflabError("--across-commits", f"git {' '.join(args)} failed in the scratch clone {repo}")


def _slowed_variant(info, values):
    values = [_asv.label(v) for v in values]
    others = [v for v in values if v not in (info.get("baseline"), "control", "plus5pct", "plus10pct")]
    return info.get("optimised") or (others[0] if others else info.get("baseline"))


def judge_pair(kind: str, results_dir: str, machine: str, factor: float) -> CommitTrial:
    """Judge the two commits one trial recorded.

    Arguments:
        kind: the trial's kind (see the module's doc).
        results_dir: the trial's asv results.
        machine: the asv machine name.
        factor: the ratio a change must exceed.

    Returns:
        The trial's counts.
    """
    _, runs = _asv.machine_runs(results_dir, machine)
    if len(runs) != 2:
        raise _asv.PerflabError(
            "--across-commits", f"expected two recorded commits in {results_dir!r}, got {len(runs)}"
        )
    a, b = sorted(runs, key=lambda r: r.date or 0)
    trial = CommitTrial(kind)
    for change in commits.compare_commits(a, b, factor):
        params = dict(change.params)
        cls = change.benchmark.split(".")[1]
        if change.verdict is None:
            trial.single_changed[0] += change.kind == commits.CHANGED
            trial.single_changed[1] += 1
            continue
        info = a.info(change.benchmark)
        slowed = _slowed_variant(info, a.benchmarks[change.benchmark].get("params", [[]])[-1])
        is_slowed = params.get("variant") == slowed
        if kind == "slower" and is_slowed and change.unit != "seconds":
            continue  # ratios and derived figures of the slowed variant move by design
        flagged = change.kind != commits.NOISE
        asv_flag = _asv.asv_compare_flags(change.a.values, change.b.values, factor)
        if kind == "slower" and is_slowed:
            counts = trial.detected.setdefault(cls, [0, 0, 0])
            flagged, asv_flag = change.kind == commits.REGRESSION, asv_flag and change.verdict.ratio > 1
        else:
            counts = trial.false.setdefault(cls, [0, 0, 0])
        counts[0] += flagged
        counts[1] += asv_flag
        counts[2] += 1
    return trial


def run_commit_trials(
    kinds: Sequence[str], classes: Sequence[str], config: str, factor: float, keep: str | None = None, log=None
) -> list[CommitTrial]:
    """Record and judge one trial per entry of `kinds` (see the module's doc).

    Arguments:
        kinds: ``"identical"`` / ``"slower"`` per trial, in order.
        classes: asv ``-b`` regular expressions.
        config: the project's asv configuration.
        factor: the ratio a change must exceed.
        keep: a folder to keep each trial's results in (``commits0/`` ...), else discarded.
        log: a file to echo progress to, or ``None``.

    Returns:
        The judged trials, in order.
    """
    root = git(os.path.dirname(os.path.abspath(config)), "rev-parse", "--show-toplevel")
    if root is None:
        raise _asv.PerflabError("--config", f"{config!r} is not in a git repository")
    out = []
    with tempfile.TemporaryDirectory(prefix="perflab-calibrate-commits-") as tmp:
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        env = os.environ | {"HOME": home}
        _call([sys.executable, "-m", "asv", "machine", "--yes", "--machine", "calibrate"], env, root)
        for i, kind in enumerate(kinds):
            if kind not in KINDS:
                raise _asv.PerflabError("--across-commits", f"trial kinds are {KINDS}, got {kind!r}")
            repo = os.path.join(tmp, f"repo{i}")
            if git(tmp, "clone", "-q", root, repo) is None:
                raise _asv.PerflabError("--config", f"cannot clone {root}")
            _scratch_commit(repo, kind)
            results_dir = os.path.abspath(os.path.join(keep or tmp, f"commits{i}"))
            conf = _asv.load_config(os.path.join(repo, os.path.relpath(config, root)))
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
            if log:
                print(f"commit trial {i + 1}/{len(kinds)} ({kind}): {shlex.join(cmd[2:])}", file=log, flush=True)
            _call(cmd, env, repo, allowed=(0, 1))
            if not os.path.isdir(os.path.join(results_dir, "calibrate")) or len(os.listdir(results_dir)) < 2:
                raise _asv.PerflabError("--across-commits", f"asv continuous recorded nothing in {results_dir}")
            if keep:
                with open(os.path.join(results_dir, "kind.txt"), "w", encoding="utf-8") as fh:
                    fh.write(kind + "\n")
            out.append(judge_pair(kind, results_dir, "calibrate", factor))
    return out


def judge_kept(folder: str, factor: float) -> list[CommitTrial]:
    """Judge again the commit trials an earlier run kept in `folder` (``commits0/`` ...)."""
    names = sorted(
        (n for n in os.listdir(folder) if n.startswith("commits") and n[7:].isdigit()), key=lambda n: int(n[7:])
    )
    trials = []
    for name in names:
        with open(os.path.join(folder, name, "kind.txt"), encoding="utf-8") as fh:
            kind = fh.read().strip()
        trials.append(judge_pair(kind, os.path.join(folder, name), "calibrate", factor))
    return trials


def _call(cmd, env, cwd, allowed=(0,)):
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    text = done.stdout + done.stderr
    if done.returncode not in allowed or " failed\n" in text:
        raise _asv.PerflabError(
            "--across-commits", f"{shlex.join(cmd[2:])} failed (exit {done.returncode}):\n{text[-3000:]}"
        )


def _rate(hits, total):
    if not total:
        return "none"
    low, high = significance.binomial_interval(hits, total)
    return f"{hits}/{total} ({hits / total:.1%}; 95% CI {low:.1%}-{high:.1%})"


def render(trials: Sequence[CommitTrial], factor: float) -> str:
    """Markdown: per class, flags on unchanged timings and detections of the slowed variant."""
    lines = [
        "## Across commits (asv continuous, interleaved rounds)",
        "",
        f"Factor {factor}. Unchanged cells: every timing of the identical-code trials, and of the "
        f"variants the slower commit did not touch. Detections: timings of the variant made "
        f"{SLOWDOWN:.0%} slower, flagged slower.",
        "",
        "| trial | class | unchanged cells flagged (two-commit rule) | (asv compare) "
        "| slowed cells detected (two-commit rule) | (asv compare) |",
        "|---|---|---|---|---|---|",
    ]
    for i, trial in enumerate(trials):
        for cls in sorted(set(trial.false) | set(trial.detected)):
            f = trial.false.get(cls, [0, 0, 0])
            d = trial.detected.get(cls, [0, 0, 0])
            lines.append(
                f"| {i} ({trial.kind}) | {cls} | {_rate(f[0], f[2])} | {_rate(f[1], f[2])} "
                f"| {_rate(d[0], d[2]) if d[2] else 'n/a'} | {_rate(d[1], d[2]) if d[2] else 'n/a'} |"
            )
    changed = sum(t.single_changed[0] for t in trials)
    total = sum(t.single_changed[1] for t in trials)
    lines += [
        "",
        f"Single-value figures (flops, bytes, memory, fingerprints, errors) changed: {changed} of {total}.",
        "",
    ]
    return "\n".join(lines)
