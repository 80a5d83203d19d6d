"""User-facing errors: printed as one clear line by the CLIs, never as a traceback."""
import errno

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file size limit


class CuratorError(Exception):
    """A failure the user can act on; the message names the file, line or field at fault.

    `exit_code` is what the command line exits with (2 unless a subclass says otherwise)."""

    exit_code = 2


def missing_extra(purpose: str, extra: str, error: ImportError) -> CuratorError:
    """The one line for an optional dependency that is not installed, naming the extra that brings it
    (`raise missing_extra("semantic dedup", "gate", e) from None`)."""
    return CuratorError(f"{purpose} needs {error.name or error}, which is not installed: "
                        f"pip install 'instruct-curator[{extra}]'")


class DiskFullError(CuratorError):
    """No space left on the device (exit code 3, apart from the gate's 1, "written, not certified")."""

    exit_code = 3
