"""User-facing errors: printed as one clear line by the CLIs, never as a traceback."""


class CuratorError(Exception):
    """A failure the user can act on; the message names the file, line or field at fault.

    `exit_code` is what the command line exits with (2 unless a subclass says otherwise)."""

    exit_code = 2
