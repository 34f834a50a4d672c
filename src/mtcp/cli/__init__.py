"""The ``mtcp`` command line: one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` and ``run(args) -> int``; heavy
imports happen inside ``run`` so that ``mtcp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mtcp.errors import MtcpError

#: Modules under ``mtcp.cli``, one per subcommand; a module that is missing is skipped.
SUBCOMMANDS = (
    "train",
    "evaluate",
    "predict",
    "synth",
    "benchmark",
    "export",
    "experiment",
    "data_report",
    "convert",  # mtcp convert-release
    "review",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtcp", description="Multi-task dense prediction with MT-CP."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"mtcp.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"mtcp.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mtcp`` console script; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from mtcp import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except MtcpError as err:
        print(f"mtcp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mtcp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
