"""The embedded default teacher: gemma-3-270m (GGUF) served by llama-cpp-python's OpenAI-compatible server on loopback.

`embedded_teacher(...)` starts the server in a child process, waits until `/v1/models` answers and stops it
(terminate, then kill) on exit. The child runs this module as `python -m curator.teacher.embedded ARGS`, which is
`python -m llama_cpp.server ARGS` with llama.cpp's extra weight buffer types (AMX / repacked weights) turned off:
with them on, the llama-cpp-python 0.3.36 build here crashes (SIGSEGV) on the first decode in some VMs that
advertise AMX, and the server exposes no option for it.
"""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from curator.embedded_models import gemma_gguf
from curator.errors import CuratorError


class TeacherStartError(CuratorError):
    """The embedded teacher server did not come up; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the parent dies, so a killed `curator` leaves no server."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def server_command(model_alias: str, port: int, n_ctx: int, n_threads: int) -> list[str]:
    return [
        sys.executable, "-m", "curator.teacher.embedded",
        "--model", str(gemma_gguf()),
        "--model_alias", model_alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads),
        "--chat_format", "gemma",  # the GGUF has no chat template; chat mode would otherwise return empty text
    ]


def wait_until_ready(proc: subprocess.Popen, base_url: str, log_path: Path, timeout_s: float) -> None:
    """Poll `GET /v1/models` until it answers 200; raise TeacherStartError if the server dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TeacherStartError(
                f"embedded teacher server exited with status {proc.returncode} before it was ready; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TeacherStartError(
        f"embedded teacher server not ready after {timeout_s:.0f}s at {base_url}; log {log_path}:\n{log_tail(log_path)}"
    )


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def embedded_teacher(
    model_alias: str,
    log_path: str | Path,
    *,
    n_ctx: int = 2048,
    n_threads: int = 1,
    startup_timeout_s: float = 120.0,
) -> Iterator[str]:
    """Run the embedded teacher for the duration of the block; yields its base URL (`http://127.0.0.1:PORT/v1`).

    One decode thread by default: llama.cpp's multi-threaded decode collapses when other processes share the CPUs.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            server_command(model_alias, port, n_ctx, n_threads),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    try:
        wait_until_ready(proc, base_url, log_path, startup_timeout_s)
        yield base_url
    finally:
        stop(proc)


def serve(argv: list[str]) -> None:
    """`llama_cpp.server`'s main with extra weight buffer types off (see the module docstring)."""
    import llama_cpp.llama_cpp as lib
    from llama_cpp.server.__main__ import main

    defaults = lib.llama_model_default_params

    def params_without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = params_without_extra_buffers
    sys.argv = ["llama_cpp.server", *argv]
    main()


if __name__ == "__main__":
    serve(sys.argv[1:])
