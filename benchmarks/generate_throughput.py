"""Throughput of `curator generate`'s runner against a loopback OpenAI-compatible server with a fixed latency.

The server (a separate process, a bare asyncio protocol so that its CPU stays small beside the client's) answers
every completion `--latency` seconds after it arrived and serves any number of requests at once; the ideal rate
with N requests in flight is N / latency. For each N the full runner path runs (prompt building, client, cache,
parse, run-dir writes) over max(20, rounds x N) plan slots (`--rounds`, default 16: a generation run is many
rounds long; the first round's ramp-up, N requests prepared and sent by a client that costs CPU per request,
weighs on the figure by about 1/rounds of a round), with a fresh client (cold connections) and an empty cache,
in as many processes as `teacher.workers: auto` gives for N on this machine (`--workers` to force a number).
Client CPU is this process's plus its worker processes'. After each runner pass, `bare aiohttp` sends the same
bodies, N at once, with bare aiohttp (no SDK, no runner): the harness's own ceiling at that N on this machine
(server, loopback, event-loop timers); and for the largest N, `client_only` sends the runner's requests through
one TeacherClient alone (no runner, no cache, one process). The last line printed is one JSON object, also
written to benchmarks/results/generate_throughput.json:
{"latency_s", "rounds", "results": [{"in_flight", "pairs_per_s", "ideal_per_s", "efficiency",
  "client_cpu_ms_per_request", "workers", "server_cpu_ms_per_request", "served_latency_ms",
  "bare_aiohttp_efficiency"}], "client_only": {...}, "client_cpu_ms_per_request"}

    python benchmarks/generate_throughput.py [--latency 0.2] [--in-flight 1 8 64 256] [--rounds 16] [--workers N]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import re
import resource
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from curator.generate.plan import plan
from curator.generate.requests import build_request
from curator.generate.aio import run_gradually
from curator.generate.runner import run_plan
from curator.generate.workers import worker_count
from curator.rundir import RunDir
from curator.spec import load_spec
from curator.teacher.client import ResponseCache, TeacherClient

SPEC = Path(__file__).resolve().parents[1] / "specs" / "starter.yaml"
RESULT = Path(__file__).parent / "results" / "generate_throughput.json"
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
MODELS = json.dumps({"object": "list", "data": [{"id": "gemma-3-270m", "object": "model"}]}).encode()
COMPLETION = json.dumps({
    "id": "cmpl-bench", "object": "text_completion", "created": 0, "model": "gemma-3-270m",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "text": " Classify the sentiment of the note.\nInput: The soup was cold again.\nResponse: negative\n"}],
    "usage": {"prompt_tokens": 400, "completion_tokens": 20, "total_tokens": 420},
}).encode()


class LatencyServer(asyncio.Protocol):
    """One connection of the benchmark's server: HTTP/1.1 keep-alive, each completion answered `latency_s` after
    it arrived. A bare protocol (no stream reader, headers scanned for Content-Length only) so that the server's
    own CPU, which shares this machine with the client, stays far below the client's. `served` counts the
    completions and sums the latency they were really served with (the event loop's timers fire late by a
    millisecond or two here), which `/stats` returns with the server's CPU seconds."""

    served = [0, 0.0]  # completions answered, seconds from arrival to reply summed over them

    def __init__(self, latency_s: float):
        self.latency_s = latency_s
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            length = int(m.group(1)) if (m := CONTENT_LENGTH.search(head)) else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            path = head.split(b" ", 2)[1]
            if path.endswith(b"/models"):
                self.reply(MODELS)
            elif path.endswith(b"/stats"):
                self.reply(json.dumps({"cpu_s": time.process_time(), "served": self.served[0], "latency_s": self.served[1]}).encode())
            else:
                self.loop.call_later(self.latency_s, self.complete, self.loop.time())

    def complete(self, arrived: float) -> None:
        self.served[0] += 1
        self.served[1] += self.loop.time() - arrived
        self.reply(COMPLETION)

    def reply(self, payload: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))


async def _serve(ready: multiprocessing.Queue, latency_s: float) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: LatencyServer(latency_s), "127.0.0.1", 0, backlog=2048)
    ready.put(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def serve(ready: multiprocessing.Queue, latency_s: float) -> None:
    asyncio.run(_serve(ready, latency_s))


def server_stats(base_url: str) -> dict[str, float]:
    """The server's CPU seconds, completions served and their summed latency, so far."""
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as r:
        return json.load(r)


def cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (the runner's workers, once joined)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


async def run_pass(base_url: str, in_flight: int, rounds: int, workers: int, work: Path) -> tuple[int, float, float]:
    """(slots done, wall seconds, client CPU seconds, workers included) for one runner pass with `in_flight`
    requests at once."""
    spec = load_spec(SPEC)
    slots = plan(spec, max(20, rounds * in_flight))
    run = RunDir(work / "run")
    run.create({"kind": "benchmark"})
    client = TeacherClient(base_url, "sk-no-key", max_in_flight=in_flight, cache=ResponseCache(work / "cache.sqlite"))
    try:
        await client.check_reachable()
        wall, cpu = time.perf_counter(), cpu_s()
        await run_plan(spec, slots, client, run, Counter(), workers=workers, console=Console(file=io.StringIO()))
        wall, cpu = time.perf_counter() - wall, cpu_s() - cpu
    finally:
        await client.close()
        client.cache.close()
    assert sum(run.counts().values()) == len(slots) == client.stats.requests
    return len(slots), wall, cpu


async def client_pass(base_url: str, in_flight: int, rounds: int) -> tuple[int, float, float]:
    """The same for TeacherClient alone: the runner's requests, prepared beforehand, sent `in_flight` at once
    (started as the runner starts them)."""
    spec = load_spec(SPEC)
    requests = [build_request(spec, slot)[0] for slot in plan(spec, max(20, rounds * in_flight))]
    client = TeacherClient(base_url, "sk-no-key", max_in_flight=in_flight)
    try:
        await client.check_reachable()
        wall, cpu = time.perf_counter(), time.process_time()
        await run_gradually(client.complete, requests)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await client.close()
    assert client.stats.requests == len(requests) and client.stats.failures == 0
    return len(requests), wall, cpu


async def bare_pass(base_url: str, in_flight: int, rounds: int) -> tuple[int, float, float]:
    """The harness's ceiling: the same request bodies sent with bare aiohttp (no SDK, no retries, no parsing beyond
    JSON), `in_flight` at once, started as the runner starts them."""
    import aiohttp

    spec = load_spec(SPEC)
    bodies = [build_request(spec, slot)[0].payload() for slot in plan(spec, max(20, rounds * in_flight))]
    slots = asyncio.Semaphore(in_flight)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(in_flight, 1000))) as session:
        async def send(body: dict[str, Any]) -> None:
            async with slots, session.post(f"{base_url}/completions", json=body) as reply:
                json.loads(await reply.read())

        wall, cpu = time.perf_counter(), time.process_time()
        await run_gradually(send, bodies)
        return len(bodies), time.perf_counter() - wall, time.process_time() - cpu


def figures(in_flight: int, latency_s: float, done: int, wall: float, cpu: float) -> dict[str, Any]:
    ideal = in_flight / latency_s
    return {"in_flight": in_flight, "pairs_per_s": round(done / wall, 2), "ideal_per_s": round(ideal, 2),
            "efficiency": round(done / wall / ideal, 3), "client_cpu_ms_per_request": round(1000 * cpu / done, 3)}


def show(label: str, f: dict[str, Any]) -> None:
    print(f"{label:13s} in_flight={f['in_flight']:4d}  {f['pairs_per_s']:8.1f} pairs/s  ideal {f['ideal_per_s']:8.1f}  "
          f"efficiency {f['efficiency']:6.1%}  client cpu {f['client_cpu_ms_per_request']:.2f} ms/request"
          + (f"  server cpu {f['server_cpu_ms_per_request']:.2f} ms/request, served in {f['served_latency_ms']:.1f} ms"
             if "server_cpu_ms_per_request" in f else "")
          + (f"  workers {f['workers']}" if "workers" in f else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server waits before answering")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--rounds", type=int, default=16, help="plan slots per request in flight (at least 20 slots)")
    parser.add_argument("--workers", type=int, help="runner processes (default: `workers: auto` for each N)")
    args = parser.parse_args()

    ready: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(ready, args.latency), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{ready.get(timeout=30)}/v1"
    results, requests, cpu_total = [], 0, 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, n in enumerate(args.in_flight):
                before = server_stats(base_url)
                workers = args.workers or worker_count("auto", n)
                done, wall, cpu = asyncio.run(run_pass(base_url, n, args.rounds, workers, Path(tmp) / str(i)))
                after = server_stats(base_url)
                f = {**figures(n, args.latency, done, wall, cpu), "workers": workers,
                     "server_cpu_ms_per_request": round(1000 * (after["cpu_s"] - before["cpu_s"]) / done, 3),
                     "served_latency_ms": round(1000 * (after["latency_s"] - before["latency_s"]) / (after["served"] - before["served"]), 2)}
                show("runner", f)
                bare = figures(n, args.latency, *asyncio.run(bare_pass(base_url, n, args.rounds)))
                show("bare aiohttp", bare)
                results.append({**f, "bare_aiohttp_efficiency": bare["efficiency"]})
                requests, cpu_total = requests + done, cpu_total + cpu
        n = max(args.in_flight)
        client_only = figures(n, args.latency, *asyncio.run(client_pass(base_url, n, args.rounds)))
        show("client only", client_only)
    finally:
        server.terminate()
        server.join()
    result = {"latency_s": args.latency, "rounds": args.rounds, "results": results, "client_only": client_only,
              "client_cpu_ms_per_request": round(1000 * cpu_total / requests, 3)}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
