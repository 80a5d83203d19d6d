"""`curator`: generate, import and gate instruction pairs into certified releases."""
from __future__ import annotations

import argparse
import importlib
import sys

from curator import __version__
from curator.cli_support import run_command
from curator.gc_tuning import tune_for_batches

# the module registering each sub-command, in help order: a command imports only its own module, so that
# `curator import` starts without the gate, teacher and trainer stacks (about 3 s of imports)
COMMANDS = {
    "generate": "curator.generate.command",
    "import": "curator.importers",
    "seeds": "curator.seeds",
    "constrain": "curator.constrain",
    "gate": "curator.gate.command",
    **dict.fromkeys(("verify", "releases", "show", "lineage", "diff", "export", "report"), "curator.release.command"),
    "review": "curator.review.command",
    "keys": "curator.keys_command",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with a known `command`, only its module is imported and registered."""
    parser = argparse.ArgumentParser(prog="curator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"instruct-curator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a process started for it (`argv` from the command line) first sets its garbage collector
    for batch work (`tune_for_batches`), a caller passing `argv` (a test, a notebook) keeps its own settings."""
    if argv is None:
        tune_for_batches()
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    return run_command("curator", build_parser(command).parse_args(argv), "interrupted; rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
