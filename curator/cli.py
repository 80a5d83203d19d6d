"""`curator`: generate, import and gate instruction pairs into certified releases."""
from __future__ import annotations

import argparse
import sys

from curator import __version__
from curator.cli_support import run_command


def build_parser() -> argparse.ArgumentParser:
    from curator import importers, keys_command, seeds
    from curator.gate import command as gate_command
    from curator.generate import command as generate_command
    from curator.release import command as release_command
    from curator.review import command as review_command

    parser = argparse.ArgumentParser(prog="curator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"instruct-curator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate_command.register(sub)
    importers.register(sub)
    seeds.register(sub)
    gate_command.register(sub)
    release_command.register(sub)
    review_command.register(sub)
    keys_command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command("curator", build_parser().parse_args(argv), "interrupted; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
