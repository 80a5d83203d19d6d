"""`curator review TARGET...`: a local web app to accept, reject or edit pairs; decisions go to a review ledger.

TARGET is a release (release-vN, vN, N, latest, or its directory) or one or more run directories. The app
listens on 127.0.0.1 (a free port unless --port is given) and prints its URL; Ctrl-C stops it. Binding to
another address requires the access token printed with the URL. The ledger defaults to
<data root>/reviews/<target>.jsonl and never lies inside a release. `curator gate --review-ledger LEDGER`
applies it; `--preferences OUT` writes the response edits as DPO pairs instead of serving.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import socket
import sys
from pathlib import Path

from curator.cli_support import positive_int
from curator.jsonl import write_jsonl
from curator.errors import CuratorError, missing_extra
from curator.paths import data_root, releases_root
from curator.review.ledger import Decisions, ReviewLedger, read_ledger_lines
from curator.review.preferences import edit_preference_rows
from curator.review.queue import build_queue, load_items
from curator.spec import REVIEW_REASONS, load_spec

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def share(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def default_ledger(sources: list[str]) -> Path:
    return data_root() / "reviews" / ("+".join(Path(s).name for s in sources) + ".jsonl")


def _check_outside_releases(ledger: Path, sources: list[str]) -> None:
    """CuratorError when `ledger` would lie under the releases root or inside a release being reviewed."""
    for place in (releases_root(), *(Path(s) for s in sources if (Path(s) / "manifest.json").is_file())):
        if ledger.resolve().is_relative_to(place.resolve()):
            raise CuratorError(f"{ledger}: releases are write-once; keep the review ledger outside {place}")


def _reasons(args: argparse.Namespace, sources: list[str]) -> list[str]:
    if args.spec:
        return list(load_spec(args.spec).gate.human_review.reasons)
    manifest = Path(sources[0]) / "manifest.json"
    if manifest.is_file():
        raw = json.loads(manifest.read_text()).get("spec", {}).get("raw", {})
        return list(raw.get("gate", {}).get("human_review", {}).get("reasons") or REVIEW_REASONS)
    return list(REVIEW_REASONS)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named explicitly: asyncio sets TCP_NODELAY only on IPPROTO_TCP sockets (else ~40 ms per reply)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CuratorError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    items, sources = load_items(args.targets)
    ledger_path = Path(args.ledger) if args.ledger else default_ledger(sources)
    _check_outside_releases(ledger_path, sources)
    if args.preferences:
        rows = edit_preference_rows(Decisions.of(read_ledger_lines(ledger_path)).per_pair())
        print(f"{write_jsonl(rows, Path(args.preferences))}: {len(rows)} preference pairs from response edits")
        return 0
    try:
        import uvicorn

        from curator.review.app import ReviewState, build_app
    except ImportError as e:
        raise missing_extra("curator review", "review", e) from None

    queue = build_queue(items, sample_size=args.sample, overlap=args.overlap, seed=args.seed)
    loopback = _is_loopback(args.host)
    token = None if loopback else secrets.token_urlsafe(18)
    ledger = ReviewLedger(ledger_path)
    state = ReviewState(queue, ledger, _reasons(args, sources), title=", ".join(Path(s).name for s in sources),
                        access_token=token, allowed_hosts=LOOPBACK + (args.host,) if loopback else ("*",))
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/" + (f"?token={token}" if token else "")
    print(f"reviewing {len(queue)} of {len(items)} pairs from {', '.join(sources)}", flush=True)
    print(f"ledger: {ledger_path}", flush=True)
    print(url, flush=True)
    server = uvicorn.Server(uvicorn.Config(build_app(state), log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        ledger.close()
    print(f"stopped; {len(ledger.decisions.live)} live decisions in {ledger_path}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="a local web app to accept, reject or edit pairs; decisions go to a ledger",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+", metavar="TARGET", help="a release, or run directories")
    p.add_argument("--ledger", help="review ledger (JSONL; default <data root>/reviews/<target>.jsonl)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need the token)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--sample", type=positive_int, default=200, help="size of the random stratified sample")
    p.add_argument("--overlap", type=share, default=0.1, help="share of the sample asked of two reviewers (0-1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (the same seed, the same queue)")
    p.add_argument("--spec", help="spec whose gate.human_review.reasons the reviewers pick from")
    p.add_argument("--preferences", metavar="OUT_JSONL",
                   help="write the ledger's response edits as TRL DPO pairs to this file, and do not serve")
    p.set_defaults(func=_run)
