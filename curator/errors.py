"""User-facing errors: printed as one clear line by the CLIs, never as a traceback."""


class CuratorError(Exception):
    """A failure the user can act on; the message names the file, line or field at fault."""
