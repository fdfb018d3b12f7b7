"""`python -m perflab calibrate`: how often the suite's verdicts are right, on the real benchmarks.

Each trial is one `asv run --python=same --record-samples` of real comparing classes (e.g.
`LinearSolveJVP`, `EnsembleSimulation`, `JVPCost`) into a private results directory, with
PERFLAB_INJECT=1 so that every cell also holds two injected twins of its baseline variant:
`plus5pct` and `plus10pct` run the baseline's real program and then spin for 5% / 10% of its
measured per-call time, so the real program's noise is kept. Every cell also holds the `control`
twin (the baseline measured again under another name). The trials are judged with the report's
rule (`perflab.significance`):

- within a run: `control` vs the baseline flagged = a false positive (identical code);
  `plus5pct` / `plus10pct` vs the baseline flagged slower = a detection;
- across runs: every cell of trial i against the same cell of trial i+1 (identical code) with
  the report's unpaired rule and with asv compare's own rule at the same factor: any flag is
  false; and how far such cells drift between two runs;
- per cell, the minimum detectable effect of the paired comparison (the factor, or the
  interval's half-width where wider).

Every rate carries a Clopper-Pearson interval: 0 of 8 is not 0%.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import sys
import tempfile
from collections.abc import Sequence

from . import _asv, significance
from ._git import git

DEFAULT_CLASSES = ("LinearSolveJVP", "EnsembleSimulation", "JVPCost")
EFFECTS = {"plus5pct": 1.05, "plus10pct": 1.10}


class CalibrationError(_asv.PerflabError):
    """A user error: the argument at fault and what was expected."""


@dataclasses.dataclass(frozen=True)
class Recorded:
    """The cells of one trial: (benchmark, parameter labels) -> per-process samples, and
    benchmark info."""

    cells: dict
    benchmarks: dict
    commit: str = ""


def load_trial(results_dir: str) -> Recorded:
    """Load the one recorded run in `results_dir` (one machine, one commit).

    Arguments:
        results_dir: an asv results directory.

    Returns:
        The trial's cells (keyed by parameter labels, as the report shows them) and benchmark
        descriptions.
    """
    benchmarks = _asv.load_benchmarks(results_dir)
    if not benchmarks:
        raise CalibrationError("results", f"no benchmarks.json in {results_dir!r}: asv recorded nothing")
    run = _asv.load_only_run(results_dir)
    if run is None:
        raise CalibrationError("results", f"expected one recorded run in {results_dir!r}")
    cells = {}
    for name in run.names:
        # Relative times (`track_<operation>_relative`) are for comparing commits: within a run
        # their control-to-baseline ratio is the own times' ratio again.
        if not run.info(name).get("paired_processes") or name.endswith("_relative"):
            continue
        for labels, _, _, samples in run.recorded(name).combinations():
            if samples:
                cells[(name, labels)] = list(samples)
    if not cells:
        raise CalibrationError("--bench", f"the run in {results_dir!r} holds no interleaved (process-paired) cell")
    return Recorded(cells, benchmarks, run.commit)


def _variant_index(info):
    return info["param_names"].index("variant")


def _partner(combo, index, variant):
    return combo[:index] + (variant,) + combo[index + 1 :]


def _label(name, combo):
    return f"{name.split('.', 1)[1]}({', '.join(combo)})"


@dataclasses.dataclass
class Tally:
    """Hits out of trials, with a binomial interval."""

    hits: int = 0
    total: int = 0

    def add(self, hit: bool) -> None:
        self.hits += bool(hit)
        self.total += 1

    def __str__(self) -> str:
        if not self.total:
            return "none"
        low, high = significance.binomial_interval(self.hits, self.total)
        share = 100 * self.hits / self.total
        return f"{self.hits}/{self.total} ({share:.1f}%, 95% CI {100 * low:.1f}-{100 * high:.1f}%)"


@dataclasses.dataclass
class ClassResult:
    """The verdicts on one benchmark class over all trials."""

    false_within: Tally = dataclasses.field(default_factory=Tally)
    false_within_asv: Tally = dataclasses.field(default_factory=Tally)
    false_across_report: Tally = dataclasses.field(default_factory=Tally)
    false_across_asv: Tally = dataclasses.field(default_factory=Tally)
    detected: dict = dataclasses.field(default_factory=lambda: {v: Tally() for v in EFFECTS})
    # The same injected pairs, counted when the interval alone excludes 1 (slower), whatever the
    # factor: a true 5% effect lands above a factor of 1.05 about half the time at best.
    significant: dict = dataclasses.field(default_factory=lambda: {v: Tally() for v in EFFECTS})
    measured: dict = dataclasses.field(default_factory=lambda: {v: [] for v in EFFECTS})
    mde: dict = dataclasses.field(default_factory=dict)


def _class_of(name):
    return name.split(".")[1]


def judge(trials: Sequence[Recorded], factor: float, confidence: float) -> dict[str, ClassResult]:
    """Judge the trials at `factor`: per class, false positives, detections and detectable effects.

    Arguments:
        trials: the recorded trials, in order.
        factor: the smallest ratio flagged.
        confidence: the level of the paired (within-run) intervals; across runs the report's
            unpaired rule keeps its own level (`significance.UNPAIRED_CONFIDENCE`).

    Returns:
        Class name -> `ClassResult`.
    """
    out: dict[str, ClassResult] = {}
    for trial in trials:
        for (name, combo), samples in trial.cells.items():
            info = trial.benchmarks[name]
            i = _variant_index(info)
            variant = combo[i]
            if variant == info["baseline"]:
                continue
            base = trial.cells.get((name, _partner(combo, i, info["baseline"])))
            if not base:
                continue
            result = out.setdefault(_class_of(name), ClassResult())
            verdict = significance.compare(base, samples, paired=True, factor=factor, confidence=confidence)
            if variant == info["control"]:
                result.false_within.add(verdict.changed)
                result.false_within_asv.add(_asv.asv_compare_flags(base, samples, factor))
                result.mde.setdefault(_label(name, combo[:i] + combo[i + 1 :]), []).append(verdict.minimum_detectable())
            elif variant in EFFECTS and info["unit"] == "seconds":
                result.detected[variant].add(verdict.changed and verdict.ratio > 1)
                result.significant[variant].add(verdict.significant and verdict.ratio > 1)
                result.measured[variant].append(verdict.ratio)
    for first, second in zip(trials, trials[1:]):
        for key, a in first.cells.items():
            b = second.cells.get(key)
            variant = key[1][_variant_index(first.benchmarks[key[0]])]
            if not b or variant in EFFECTS:
                continue
            result = out.setdefault(_class_of(key[0]), ClassResult())
            verdict = significance.compare(a, b, paired=False, factor=factor)
            result.false_across_report.add(verdict.changed)
            result.false_across_asv.add(_asv.asv_compare_flags(a, b, factor))
    return out


def cross_run_drift(trials: Sequence[Recorded]) -> list[tuple[str, float]]:
    """Quantiles of max(r, 1/r), r = one timed cell's median in a trial over the next trial's.

    Arguments:
        trials: the trials, in order.

    Returns:
        (label, ratio) for the median, 90th, 95th and 99th percentiles; empty without pairs.
    """
    ratios = []
    for first, second in zip(trials, trials[1:]):
        for key, a in first.cells.items():
            b = second.cells.get(key)
            if b and first.benchmarks[key[0]].get("unit") == "seconds":
                r = statistics.median(b) / statistics.median(a)
                ratios.append(max(r, 1 / r))
    if len(ratios) < 2:
        return []
    cuts = statistics.quantiles(ratios, n=100, method="inclusive")
    return [
        ("median", statistics.median(ratios)),
        ("90th percentile", cuts[89]),
        ("95th percentile", cuts[94]),
        ("99th percentile", cuts[98]),
    ]


def render(
    by_level: dict[float, dict[str, ClassResult]],
    *,
    trials: int,
    factor: float,
    command: str,
    commit: str = "",
    trials_for_drift: Sequence[Recorded] = (),
) -> str:
    """The calibration as Markdown: a summary table per confidence level (the first is the
    report's), then each cell's minimum detectable effect at the first level."""
    from tabulate import tabulate

    levels = list(by_level)
    text = [
        "# Calibration on the real benchmarks",
        "",
        f"Generated by `{command}`: {trials} trials at commit {commit[:8]}, each one"
        " `asv run --python=same --record-samples` with PERFLAB_INJECT=1, judged at factor "
        f"{factor} (`perflab.significance`). Rates carry 95% Clopper-Pearson intervals.",
        "",
        "'detected': the report's rule flags the injected twin slower (the interval excludes 1 and the"
        f" estimate lies beyond {factor}). 'interval excludes 1': the interval alone, whatever the"
        " factor; a true effect equal to the factor lands beyond it about half the time at best, so"
        " both are shown.",
    ]
    for level in levels:
        rows = []
        for cls, r in sorted(by_level[level].items()):
            effects = ", ".join(f"{v}: {statistics.median(r.measured[v]):.3f}" for v in EFFECTS if r.measured[v])
            rows.append(
                [
                    cls,
                    str(r.false_within),
                    str(r.false_within_asv),
                    str(r.false_across_report),
                    str(r.false_across_asv),
                    str(r.detected["plus5pct"]),
                    str(r.detected["plus10pct"]),
                    str(r.significant["plus5pct"]),
                    str(r.significant["plus10pct"]),
                    effects or "-",
                ]
            )
        text += [
            "",
            f"## Verdicts with {100 * level:g}% intervals",
            "",
            tabulate(
                rows,
                headers=[
                    "class",
                    "identical flagged, one run (report)",
                    "one run (asv rule)",
                    "identical flagged across runs (report, unpaired rule)",
                    "across runs (asv compare)",
                    "+5% detected",
                    "+10% detected",
                    "+5% interval excludes 1",
                    "+10% interval excludes 1",
                    "measured effect (median ratio)",
                ],
                tablefmt="github",
            ),
        ]
    drift = cross_run_drift(trials_for_drift) if trials_for_drift else []
    if drift:
        quantiles = ", ".join(f"{label} {value:.3f}" for label, value in drift)
        text += [
            "",
            "## Identical code, two runs apart",
            "",
            f"The ratio of a cell's median time in one trial to the next (identical code), over every "
            f"timed cell: {quantiles}. Processes of one run share the run's offset, which is why the "
            f"report judges cells of two runs (unpaired) at {100 * significance.UNPAIRED_CONFIDENCE:g}% "
            "and variants of one run (paired) at the level of the first table.",
        ]
    text += [
        "",
        f"## Minimum detectable effect per cell at {100 * levels[0]:g}% (median over trials; control vs "
        "baseline, paired)",
        "",
    ]
    mde_rows = [
        [cls, cell, f"{statistics.median(v):.3f}"]
        for cls, r in sorted(by_level[levels[0]].items())
        for cell, v in sorted(r.mde.items())
    ]
    text.append(tabulate(mde_rows, headers=["class", "cell", "minimum detectable ratio"], tablefmt="github"))
    return "\n".join(text) + "\n"


def _asv_config(config, results_dir):
    conf = _asv.load_config(config)
    root = os.path.dirname(os.path.abspath(config))
    for key in ("repo", "benchmark_dir", "env_dir", "html_dir"):
        if key in conf and "://" not in conf[key]:
            conf[key] = os.path.join(root, conf[key])
    return conf | {"results_dir": results_dir}


def run_trials(
    trials: int, classes: Sequence[str], config: str, env: dict, keep: str | None = None, log=None
) -> list[Recorded]:
    """Run `trials` asv runs of `classes` with the injected twins; return them loaded.

    asv runs in a private home with its own machine file, so a machine where asv never ran
    works and the user's ~/.asv-machine.json is not touched; compiled programs still come
    from the user's perflab cache.

    Arguments:
        trials: how many runs.
        classes: asv ``-b`` regular expressions.
        config: the project's asv configuration.
        env: extra environment variables for the runs.
        keep: a folder to keep the trials' asv results in (``trial0/`` ...), so the
            calibration can be judged again from them (`judge_kept`); default: discarded.
        log: a file to echo progress to, or ``None``.

    Returns:
        The loaded trials, in order.
    """
    if not os.path.isfile(config):
        raise CalibrationError("--config", f"no asv configuration at {config!r}")

    commit = git(".", "rev-parse", "HEAD")
    if commit is None:
        raise CalibrationError("--config", "not in a git repository: the trials are labelled with HEAD")
    loaded = []
    with tempfile.TemporaryDirectory(prefix="perflab-calibrate-") as tmp:
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        run_env = (
            os.environ
            | env
            | {
                "HOME": home,
                "PERFLAB_INJECT": "1",
                "PERFLAB_CACHE_DIR": os.environ.get("PERFLAB_CACHE_DIR")
                or os.path.join(os.path.expanduser("~"), ".cache", "perflab"),
            }
        )
        machine = [sys.executable, "-m", "asv", "machine", "--yes", "--machine", "calibrate"]
        _asv.run_asv(machine, run_env, "asv machine")
        for i in range(trials):
            # Absolute: asv resolves a relative results_dir against the config's own folder.
            results_dir = os.path.abspath(os.path.join(keep or tmp, f"trial{i}"))
            conf = os.path.join(tmp, f"asv{i}.json")
            with open(conf, "w", encoding="utf-8") as fh:
                json.dump(_asv_config(config, results_dir), fh)
            cmd = [
                sys.executable,
                "-m",
                "asv",
                "run",
                "--python=same",
                "--record-samples",
                "--machine",
                "calibrate",
                "--set-commit-hash",
                commit,
                "--config",
                conf,
            ]
            for pattern in classes:
                cmd += ["-b", pattern]
            if log:
                print(f"trial {i + 1}/{trials}: {shlex.join(cmd[2:])}", file=log, flush=True)
            _asv.run_asv(cmd, run_env, "--bench")
            loaded.append(load_trial(results_dir))
    return loaded


def judge_kept(folder: str) -> list[Recorded]:
    """Load the trials a calibration kept in `folder` (``trial0/``, ``trial1/`` ... in order).

    Arguments:
        folder: the ``--keep`` folder of an earlier calibration.

    Returns:
        The trials, in order.
    """
    if not os.path.isdir(folder):
        raise CalibrationError("--from", f"no folder {folder!r}")
    names = [n for n in os.listdir(folder) if n.startswith("trial") and n[5:].isdigit()]
    names.sort(key=lambda n: int(n[5:]))
    if len(names) < 2:
        raise CalibrationError("--from", f"{folder!r} holds {len(names)} trial folder(s) (trial0, trial1, ...); need 2")
    return [load_trial(os.path.join(folder, n)) for n in names]


def _write(text, output):
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `calibrate` subcommand."""
    parser = subparsers.add_parser(
        "calibrate",
        help="judge the suite's verdicts on real benchmarks with injected slowdowns",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--trials", type=int, default=8, help="asv runs (default: 8)")
    parser.add_argument(
        "-b",
        "--bench",
        action="append",
        metavar="REGEX",
        help=f"classes to run (default: {', '.join(DEFAULT_CLASSES)})",
    )
    parser.add_argument("--factor", type=float, default=significance.DEFAULT_FACTOR)
    parser.add_argument(
        "--confidence",
        type=float,
        action="append",
        help=f"interval level, repeatable: one table each (default: the report's, {significance.DEFAULT_CONFIDENCE})",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for the runs (repeatable)",
    )
    parser.add_argument("--config", default="asv.conf.json", help="asv configuration file")
    parser.add_argument("--keep", metavar="DIR", help="keep the trials' asv results in DIR (trial0/, ...)")
    parser.add_argument(
        "--from",
        dest="kept",
        metavar="DIR",
        help="judge the trials kept in DIR by an earlier --keep instead of running new ones",
    )
    parser.add_argument(
        "--across-commits",
        metavar="KINDS",
        help="instead: trials of two commits through asv continuous, a comma-separated list of "
        "'identical' (a docs-only commit) and 'slower' (one variant per class 10%% slower), "
        "e.g. identical,slower (see perflab._commit_calibration); 'slower:N' slows by N%%",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="--across-commits only: asv rounds per commit (asv's -a rounds=N; default: each class's own)",
    )
    parser.add_argument(
        "--pairs",
        action="append",
        metavar="OLD:NEW",
        help="with --across-commits identical: judge pairs of commits already recorded in the "
        "project's results instead of running new trials (comma-separated or repeated; the two "
        "commits' benchmarked code must be identical); needs --machine",
    )
    parser.add_argument("--machine", help="--pairs only: the asv machine both commits were recorded on")
    parser.add_argument("--results-dir", help="--pairs only: asv results directory (default: results/ when present)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write Markdown to FILE (default: stdout)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the calibration described by `args` (see `add_parser`) and print or write it."""
    if args.rounds is not None and not args.across_commits:
        raise CalibrationError("--rounds", "only --across-commits runs asv's rounds: use it with --across-commits")
    if args.pairs and (args.across_commits or "").strip() != "identical":
        raise CalibrationError("--pairs", "judges recorded identical-code pairs: give --across-commits identical")
    if args.pairs and (args.kept or args.rounds is not None):
        raise CalibrationError("--pairs", "reads the project's results: leave out --from and --rounds")
    if (args.machine or args.results_dir) and not args.pairs:
        raise CalibrationError("--machine" if args.machine else "--results-dir", "only --pairs reads recorded results")
    if args.trials < 2 and not args.kept and not args.across_commits:
        raise CalibrationError("--trials", f"at least 2 trials are needed to judge across runs, got {args.trials}")
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CalibrationError("--env", f"expected NAME=VALUE, got {item!r}")
        env[name] = value
    classes = args.bench or [f"\\.{c}\\." for c in DEFAULT_CLASSES]
    if args.across_commits:
        from . import _commit_calibration
        from .report.commits import ungated_patterns

        levels = args.confidence or [None]
        # What the gate leaves out, as asv's regressions page does, for judging recorded results
        # (new trials read it from their scratch clone's config).
        ungated = ungated_patterns(args.config) if args.pairs or args.kept else ()
        pairs_text = ""
        if args.pairs:
            if not args.machine:
                raise CalibrationError("--machine", "--pairs needs the asv machine both commits were recorded on")
            names = [p.strip() for item in args.pairs for p in item.split(",") if p.strip()]
            results_dir = _asv.results_dir_option(args.results_dir, CalibrationError)
            pairs = _commit_calibration.recorded_pairs(".", results_dir, args.machine, names)
            judged = _commit_calibration.judge_recorded_pairs(pairs, args.factor, levels, ungated)
            pairs_text = _commit_calibration.render_pairs(pairs) + "\n"
        elif args.kept:
            judged = _commit_calibration.judge_kept(args.kept, args.factor, levels, ungated)
        else:
            kinds = [k.strip() for k in args.across_commits.split(",") if k.strip()]
            judged = _commit_calibration.run_commit_trials(
                kinds,
                classes,
                args.config,
                args.factor,
                keep=args.keep,
                log=sys.stderr,
                rounds=args.rounds,
                confidences=levels,
            )
        command = getattr(args, "command_line", "python -m perflab calibrate")
        title = "Identical code across commits, recorded pairs" if args.pairs else "Calibration across commits"
        text = (
            f"# {title}\n\nGenerated by `{command}`.\n\n" + pairs_text + _commit_calibration.render(judged, args.factor)
        )
        return _write(text, args.output)
    if args.kept:
        trials = judge_kept(args.kept)
    else:
        trials = run_trials(args.trials, classes, args.config, env, keep=args.keep, log=sys.stderr)
    levels = args.confidence or [significance.DEFAULT_CONFIDENCE]
    by_level = {level: judge(trials, args.factor, level) for level in levels}
    command = getattr(args, "command_line", "python -m perflab calibrate")
    text = render(
        by_level,
        trials=len(trials),
        factor=args.factor,
        command=command,
        commit=trials[0].commit,
        trials_for_drift=trials,
    )
    return _write(text, args.output)
