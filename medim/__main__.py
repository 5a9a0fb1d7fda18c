"""Command line: `python -m medim generate|info|init-random|...` (see `python -m medim --help`)."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from medim.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m medim", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(subparsers, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # what reports record as "the command that made this"
    args.command_line = "python -m medim " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as error:  # user-facing errors: print the message, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
