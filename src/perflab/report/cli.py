"""The ``report`` command line: parses the arguments and calls `pipeline` for each mode.

- no selection: what is recorded (machines, commits) and which study reports exist, with the
  commands that render them;
- tables of named benchmarks (``--benchmark``, ``--before``, ``--after`` ...);
- ``--study NAME``: the study report of ``docs/reports/NAME.toml``, into ``docs/reports/NAME.md``;
- ``--check``: every study report's staleness and drift; exit 1 if any report is not current;
- ``--cost``: the wall time per benchmark class of a recorded run;
- ``--commits A B``: every cell of commit B judged against commit A (`commits`); exit 1 on a
  timing regression at the gate's level (``--gate-confidence``).
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import _asv
from .._asv import ReportError
from . import commits, pipeline, spec
from .comparisons import DEFAULT_FACTOR
from .cost import class_costs, render_costs
from .render import FORMATS, RENDERERS, when


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand.

    Arguments:
        subparsers: the object returned by `argparse.ArgumentParser.add_subparsers`.

    Returns:
        The subcommand's parser.
    """
    parser = subparsers.add_parser(
        "report",
        help="BEFORE/AFTER tables of variants from recorded asv results",
        description=(
            "Tables of two variants of the same recorded asv run (BEFORE vs AFTER), per value of "
            "the non-row, non-variant parameters. Reads the newest commit recorded for this "
            "machine unless told otherwise. '~' marks a pair the report's rule (per-process "
            "intervals, perflab.significance) does not flag. "
            "With --study, the study report its spec docs/reports/STUDY.toml describes; with "
            "--check, whether every study report is current."
        ),
    )
    where = parser.add_argument_group("which results")
    where.add_argument(
        "--results-dir",
        help=(
            "asv results directory (default: results/ when present, else results_dir of "
            "./asv.conf.json, else .asv/results)"
        ),
    )
    where.add_argument("--machine", help="asv machine name (default: this machine, else the only one recorded)")
    where.add_argument("--commit", help="commit hash prefix (default: the newest recorded)")
    where.add_argument("--env", help="asv environment name, when the commit was recorded in several")
    what = parser.add_argument_group("what to show")
    what.add_argument(
        "--benchmark",
        "-b",
        dest="benchmarks",
        action="extend",
        nargs="+",
        metavar="NAME",
        help=(
            "benchmark(s): a full name, dotted part of one (e.g. LinearSolveJVP) or a glob "
            "(e.g. 'LinearSolveJVP.*'); repeatable; without it, the report lists what is "
            "recorded"
        ),
    )
    what.add_argument(
        "--before",
        help="the BEFORE variant (default: the baseline benchmarks.json records for it)",
    )
    what.add_argument(
        "--after",
        help="the AFTER variant (default: the optimised variant benchmarks.json records)",
    )
    what.add_argument(
        "--extra",
        action="extend",
        nargs="+",
        default=[],
        metavar="VARIANT",
        help="further variants shown as columns (repeatable, or comma-separated)",
    )
    what.add_argument(
        "--rows",
        metavar="PARAM",
        help="comma-separated parameters down the rows (default: size, else all but the variant)",
    )
    what.add_argument(
        "--factor",
        type=float,
        default=DEFAULT_FACTOR,
        help=f"the ratio a change must exceed, beyond its interval, to be flagged (default: {DEFAULT_FACTOR})",
    )
    studies = parser.add_argument_group("study reports (docs/reports/STUDY.toml)")
    studies.add_argument(
        "--study",
        metavar="STUDY",
        help="render the study report of docs/reports/STUDY.toml (default output: its .md)",
    )
    studies.add_argument(
        "--check",
        action="store_true",
        help=(
            "for every spec (or --study): list reports whose study code changed after the "
            "recorded commit, or that do not regenerate byte for byte; exit 1 if any"
        ),
    )
    studies.add_argument(
        "--commits",
        nargs=2,
        metavar=("A", "B"),
        help=(
            "every cell recorded for both commits (any git revisions) on one machine, B judged "
            "against A with the cross-run rule; regressions first; exit 1 on a timing regression "
            "at the gate's level (--gate-confidence)"
        ),
    )
    studies.add_argument(
        "--confidence",
        type=float,
        metavar="LEVEL",
        help=(
            "with --commits: the listing's level for every cell, both rules "
            "(default: the rule's own, 0.99 paired, 0.999 Welch's)"
        ),
    )
    studies.add_argument(
        "--gate-confidence",
        type=float,
        metavar="LEVEL",
        help=(
            "with --commits: the least level at which a regression fails the gate, the exit status "
            f"(default {commits.GATE_CONFIDENCE}; the listing's level where that is stricter)"
        ),
    )
    studies.add_argument(
        "--cost",
        action="store_true",
        help="the wall time and processes per benchmark class of a recorded run (docs/reports/suite_cost.md)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="output format (default: text; study reports are Markdown)",
    )
    out.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout ('-': stdout)")
    parser.set_defaults(func=run)
    return parser


_TABLE_OPTIONS = ("benchmarks", "before", "after", "rows", "commit", "env", "machine")


def run(args: argparse.Namespace) -> int:
    """Run the ``report`` subcommand.

    Arguments:
        args: the parsed arguments (see `add_parser`); ``command_line``, if set, is the command
            stated in the header.

    Returns:
        The exit status: 0, or 1 when ``--check`` finds a report that is not current.

    Raises:
        ReportError: on a user error (``python -m perflab`` prints it as one line, exit 2).
    """
    results_dir = _asv.results_dir_option(args.results_dir, ReportError)
    if args.study or args.check:
        given = [f"--{o.rstrip('s')}" for o in _TABLE_OPTIONS if getattr(args, o, None)]
        given += ["--extra"] if args.extra else []
        if given:
            option = "--check" if args.check else "--study"
            raise ReportError(given[0], f"not used with {option}: the spec says what to show")
    if args.confidence is not None and not args.commits:
        raise ReportError("--confidence", "is used with --commits only (the two-commit rule's level)")
    if args.gate_confidence is not None and not args.commits:
        raise ReportError("--gate-confidence", "is used with --commits only (the two-commit gate's level)")
    if args.commits:
        given = [
            f"--{o.rstrip('s')}" for o in ("benchmarks", "before", "after", "rows", "commit") if getattr(args, o, None)
        ]
        given += [f"--{o}" for o in ("extra", "study", "check", "cost") if getattr(args, o, None)]
        if given:
            raise ReportError(given[0], "not used with --commits: every cell both commits recorded is judged")
        return _commits(args, results_dir)
    if args.check:
        return _check(args, results_dir)
    if args.study:
        return _study(args, results_dir)
    if args.cost:
        run = _asv.load_run(results_dir, machine=args.machine, commit=args.commit, env=args.env)
        command = getattr(args, "command_line", None) or "python -m perflab report --cost"
        _write(render_costs(run, class_costs(run), command), args.output)
        return 0
    if not args.benchmarks:
        given = [f"--{o}" for o in ("before", "after", "rows") if getattr(args, o, None)]
        given += ["--extra"] if args.extra else []
        if given:
            raise ReportError(given[0], "needs --benchmark: the benchmarks whose variants to pair")
        _write(_overview(results_dir, args.machine), args.output)
        return 0
    command = getattr(args, "command_line", None) or pipeline.DEFAULT_COMMAND
    try:
        run = _asv.load_run(results_dir, machine=args.machine, commit=args.commit, env=args.env)
        report = pipeline.build_report(
            run,
            args.benchmarks,
            before=args.before,
            after=args.after,
            extra=[v for e in args.extra for v in e.split(",") if v],
            rows=[r for r in args.rows.split(",") if r] if args.rows else None,
            factor=args.factor,
            command=command,
        )
    except _asv.UserError as err:
        # asv's own loaders report malformed or outdated files this way.
        raise ReportError("--results-dir", _asv.one_line(err)) from None
    _write(RENDERERS[args.format](report), args.output)
    return 0


def _commits(args, results_dir):
    machines = _asv.recorded_machines(results_dir) if os.path.isdir(results_dir) else {}
    if args.machine is None and len(machines) > 1:
        raise ReportError(
            "--machine", f"{results_dir!r} holds several machines; pick one: {', '.join(sorted(machines))}"
        )
    _, runs = _asv.machine_runs(results_dir, args.machine)
    first, second = args.commits
    a = commits.pick_run(runs, first, ".", args.env, "--commits")
    b = commits.pick_run(runs, second, ".", args.env, "--commits")
    if not args.factor >= 1.0:
        raise ReportError("--factor", f"must be at least 1.0, got {args.factor}")
    gate = commits.GATE_CONFIDENCE if args.gate_confidence is None else args.gate_confidence
    for option, level in (("--confidence", args.confidence), ("--gate-confidence", gate)):
        if level is not None and not 0.5 <= level < 1:
            raise ReportError(option, f"must lie in [0.5, 1), e.g. 0.99, got {level}")
    # The gate leaves out what asv's regressions page leaves out, read from the same config.
    ungated = commits.ungated_patterns("asv.conf.json")
    changes = commits.compare_commits(a, b, args.factor, args.confidence, ungated, gate)
    _write(commits.render_commits(a, b, changes, args.factor, args.format, args.confidence, gate), args.output)
    return 1 if commits.failed(changes) else 0


def _overview(results_dir, machine):
    lines = []
    try:
        machine, runs = _asv.machine_runs(results_dir, machine)
    except ReportError as err:
        lines += [f"No recorded results to report: {err.message}", ""]
    else:
        lines += [f"Recorded on machine {machine} in {results_dir} (newest last):"]
        for run in runs:
            date = f"committed {when(run.date)}" if run.date else "date unknown"
            lines.append(f"  {run.commit[:8]}  {date}  {len(run.names)} benchmarks  {run.env_name}")
        lines.append("")
    try:
        specs = spec.load_specs(".")
    except ReportError as err:
        specs = []
        lines += [f"Study reports: {err}", ""]
    if specs:
        lines.append("Study reports (docs/reports/STUDY.toml -> .md):")
        width = max(len(s.study) for s in specs)
        for one in specs:
            lines.append(f"  {one.study:<{width}}  recorded at {one.commit}  `{one.command}`")
        lines.append("")
    lines += [
        "Commands:",
        "  python -m perflab report --study STUDY        a study report from its spec",
        "  python -m perflab report --check              stale or drifted study reports (exit 1)",
        "  python -m perflab report -b BENCHMARK [--before V --after V] [--commit C]",
        "                                                 BEFORE/AFTER tables of one recorded run",
        "  python -m perflab report --cost [--commit C]  wall time per benchmark class",
        "  python -m perflab report --commits A B [--confidence L] [--gate-confidence L]",
        "                                                 every cell of commit B against commit A (exit 1",
        "                                                 on a timing regression, its control and",
        "                                                 companions aside)",
    ]
    return "\n".join(lines) + "\n"


def _study(args, results_dir):
    (one,) = spec.load_specs(".", [args.study])
    text = pipeline.study_text(one, results_dir, ".")
    target = args.output or one.output
    _write(text, None if target == "-" else target)
    if target != "-":
        print(f"wrote {target}")
    return 0


def _check(args, results_dir):
    specs = spec.load_specs(".", [args.study] if args.study else None)
    if not specs:
        raise ReportError("--check", f"no report specs in {spec.SPEC_DIR}")
    bad = 0
    for one in specs:
        problems = pipeline.check_study(one, results_dir, ".")
        bad += bool(problems)
        if not problems:
            print(f"{one.study}: current ({one.output})")
        for problem in problems:
            print(f"{one.study}: {problem}")
    return 1 if bad else 0


def _write(text, output):
    if output and output != "-":
        try:
            with open(output, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        except OSError as err:
            raise ReportError("--output", f"cannot write {output!r}: {err.strerror}") from None
    else:
        sys.stdout.write(text)


__all__ = ["add_parser", "run"]
