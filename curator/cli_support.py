"""What the `curator` and `trainer` command lines share: argument types and the error contract."""
from __future__ import annotations

import argparse
import sys

from curator.errors import NO_SPACE_ERRNOS, CuratorError, DiskFullError


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def run_command(prog: str, args: argparse.Namespace, interrupted: str = "interrupted") -> int:
    """Run the parsed subcommand: a CuratorError becomes one line on stderr and its exit code (2 unless it names
    another), a full disk exit 3, Ctrl-C exit 130."""
    try:
        return int(args.func(args) or 0)
    except CuratorError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno not in NO_SPACE_ERRNOS:
            raise
        print(f"{prog}: error: {e.strerror} ({e.filename or 'while writing'}); free space, then rerun the same "
              "command (runs resume)", file=sys.stderr)
        return DiskFullError.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
