"""Throughput of `curator generate`'s runner against a loopback OpenAI-compatible server with a fixed latency.

The server (a separate process, so its CPU is not billed to the client) answers every completion after
`--latency` seconds and serves any number of requests at once; the ideal rate with N requests in flight is
N / latency. For each N the full runner path runs (prompt building, client, cache, parse, run-dir writes) over
max(20, 4N) plan slots. The last line printed is one JSON object:
{"latency_s", "results": [{"in_flight", "pairs_per_s", "ideal_per_s", "efficiency"}], "client_cpu_ms_per_request"}

    python benchmarks/generate_throughput.py [--latency 0.2] [--in-flight 1 8 64 256]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from curator.generate.plan import plan
from curator.generate.runner import run_plan
from curator.rundir import RunDir
from curator.spec import load_spec
from curator.teacher.client import ResponseCache, TeacherClient

SPEC = Path(__file__).resolve().parents[1] / "specs" / "starter.yaml"
MODELS = json.dumps({"object": "list", "data": [{"id": "gemma-3-270m", "object": "model"}]}).encode()
COMPLETION = json.dumps({
    "id": "cmpl-bench", "object": "text_completion", "created": 0, "model": "gemma-3-270m",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "text": " Classify the sentiment of the note.\nInput: The soup was cold again.\nResponse: negative\n"}],
    "usage": {"prompt_tokens": 400, "completion_tokens": 20, "total_tokens": 420},
}).encode()


async def _serve(ready: multiprocessing.Queue, latency_s: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request_line := await reader.readline():
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", 0)))
                if request_line.split()[1].endswith(b"/models"):
                    payload = MODELS
                else:
                    await asyncio.sleep(latency_s)
                    payload = COMPLETION
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
    ready.put(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def serve(ready: multiprocessing.Queue, latency_s: float) -> None:
    asyncio.run(_serve(ready, latency_s))


async def measure(base_url: str, in_flight: int, work: Path) -> tuple[int, float, float]:
    """(slots done, wall seconds, client CPU seconds) for one runner pass with `in_flight` requests at once."""
    spec = load_spec(SPEC)
    slots = plan(spec, max(20, 4 * in_flight))
    run = RunDir(work / f"run-{in_flight}")
    run.create({"kind": "benchmark"})
    client = TeacherClient(base_url, "sk-no-key", max_in_flight=in_flight, cache=ResponseCache(work / f"cache-{in_flight}.sqlite"))
    try:
        await client.check_reachable()
        wall, cpu = time.perf_counter(), time.process_time()
        await run_plan(spec, slots, client, run, Counter(), console=Console(file=io.StringIO()))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await client.close()
        client.cache.close()
    assert sum(run.counts().values()) == len(slots) == client.stats.requests
    return len(slots), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server waits before answering")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 64, 256])
    args = parser.parse_args()

    ready: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(ready, args.latency), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{ready.get(timeout=30)}/v1"
    results, requests, cpu_total = [], 0, 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.in_flight:
                done, wall, cpu = asyncio.run(measure(base_url, n, Path(tmp)))
                ideal = n / args.latency
                results.append({"in_flight": n, "pairs_per_s": round(done / wall, 2), "ideal_per_s": round(ideal, 2),
                                "efficiency": round(done / wall / ideal, 3)})
                requests, cpu_total = requests + done, cpu_total + cpu
                print(f"in_flight={n:4d}  {done:5d} slots in {wall:6.2f}s  {done / wall:8.1f} pairs/s  "
                      f"ideal {ideal:8.1f}  efficiency {done / wall / ideal:5.1%}  client cpu {1000 * cpu / done:.2f} ms/request")
    finally:
        server.terminate()
        server.join()
    print(json.dumps({"latency_s": args.latency, "results": results,
                      "client_cpu_ms_per_request": round(1000 * cpu_total / requests, 3)}))


if __name__ == "__main__":
    main()
