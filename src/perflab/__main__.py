"""`python -m perflab COMMAND`: the command-line entry point.

Each subcommand lives in its own module, which registers its parser with ``add_parser`` and
sets ``func`` (parsed arguments -> exit status, raising a `perflab._asv.PerflabError` on a
user error);
adding one means adding its module to `SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from . import calibrate, dashboard, report
from ._asv import PerflabError, UserError, one_line

SUBCOMMANDS = (report, calibrate, dashboard)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m perflab",
        description="perflab: reports from recorded asv results, and the noise calibration.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the subcommand.

    Arguments:
        argv: the arguments after ``python -m perflab``; default ``sys.argv[1:]``.

    Returns:
        The exit status: the subcommand's, or 2 when no subcommand is given or it reports a
        user error (printed as one line naming the argument at fault).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    # Reports state the command that produced them, so they can be regenerated.
    args.command_line = shlex.join(["python", "-m", "perflab", *argv])
    try:
        return args.func(args)
    except PerflabError as err:
        print(f"perflab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except UserError as err:
        # A file asv's loaders cannot read (asv.conf.json, a results file); asv's message names it.
        print(f"perflab {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
