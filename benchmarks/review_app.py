"""The review app under load: decisions/s with every decision fsynced, latency, and page load of a big queue.

1. A run directory of `--pairs` (default 10,000) pairs in a temporary data root; `curator review` on it as a
   subprocess (the real CLI: uvicorn on loopback, a free port), with the whole run in the queue.
2. Page load of that queue: the requests the page makes before it shows the first pair (the page, its script
   and style, the next open pair, that pair, the first page of the queue list), over HTTP, median of 5;
   and, when Debian's chromium and chromium-driver are installed, in headless Chromium from navigation to
   the first pair drawn (median of 3).
3. `--reviewers` (default 8) reviewers scripted over HTTP (aiohttp, one keep-alive connection each) accept
   pairs as fast as the server answers for `--seconds` (default 10): decisions/s acknowledged, latency
   p50 / p99 / max, and a check that the ledger holds exactly the acknowledged decisions.

Prints figures; the last line is one JSON object, also written to benchmarks/results/review_app.json.

    python benchmarks/review_app.py [--pairs 10000] [--reviewers 8] [--seconds 10]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from curator.records import build_messages, make_pair  # noqa: E402
from curator.review.ledger import read_ledger_lines  # noqa: E402
from review_helpers import CHROMEDRIVER, CHROMIUM, ReviewServer, chrome  # noqa: E402

RESULTS = Path(__file__).parent / "results"
FAMILIES = ("qa", "classify", "extract", "summarize")


def write_run(run: Path, n: int) -> None:
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"kind": "benchmark", "status": "complete"}))
    with open(run / "pairs.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            record = make_pair(build_messages(f"Question {i}: what is {i} plus {i + 1}?", "", f"It is {2 * i + 1}."),
                               task_family=FAMILIES[i % 4], format="free_text", difficulty=("easy", "hard")[i % 2],
                               source="synthetic", strategy="self_instruct", teacher_model="bench")
            f.write(json.dumps(record) + "\n")
    for name in ("quarantine.jsonl", "failed.jsonl"):
        (run / name).touch()


def page_load_http(base: str) -> float:
    """Seconds for the requests the page makes before it shows the first pair."""
    with httpx.Client(base_url=base) as client:
        started = time.perf_counter()
        for path in ("/?reviewer=bench", "/assets/app.js", "/assets/app.css"):
            client.get(path).raise_for_status()
        first = client.get("/api/next", params={"reviewer": "bench", "after": -1}).json()["index"]
        client.get(f"/api/item/{first}", params={"reviewer": "bench"}).raise_for_status()
        client.get("/api/queue", params={"reviewer": "bench", "offset": 0, "limit": 50}).raise_for_status()
        return time.perf_counter() - started


def page_load_browser(base: str, user_data: Path) -> list[float]:
    from selenium.webdriver.support.ui import WebDriverWait
    driver = chrome(user_data)
    try:
        out = []
        for _ in range(3):
            started = time.perf_counter()
            driver.get(f"{base}/?reviewer=bench")
            WebDriverWait(driver, 30).until(
                lambda d: d.find_element("tag name", "body").get_attribute("data-shown") is not None)
            out.append(time.perf_counter() - started)
        return out
    finally:
        driver.quit()


async def reviewer(session: aiohttp.ClientSession, url: str, name: str, n_items: int, offset: int, until: float,
                   latencies: list[float]) -> int:
    done = 0
    while time.perf_counter() < until:
        body = {"reviewer": name, "index": (offset + done) % n_items, "decision": "accept"}
        started = time.perf_counter()
        async with session.post(url, json=body) as response:
            await response.read()
            response.raise_for_status()
        latencies.append(time.perf_counter() - started)
        done += 1
    return done


async def load(base: str, token: str, reviewers: int, n_items: int, seconds: float) -> tuple[int, float, list[float]]:
    """Each reviewer on its own keep-alive connection (aiohttp: httpx's async client costs the harness
    several times the server's CPU per request on this machine)."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=reviewers)
    async with aiohttp.ClientSession(headers={"X-CSRF-Token": token}, connector=connector) as session:
        started = time.perf_counter()
        counts = await asyncio.gather(*(reviewer(session, f"{base}/api/decide", f"r{i}", n_items,
                                                 i * (n_items // reviewers), started + seconds, latencies)
                                        for i in range(reviewers)))
    return sum(counts), time.perf_counter() - started, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--reviewers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_run(data / "runs" / "bench", args.pairs)
        ledger = Path(tmp) / "ledger.jsonl"
        server = ReviewServer(data, "bench", "--ledger", str(ledger), "--sample", str(args.pairs))
        try:
            queued = int(server.lines[0].split()[1])
            http = [page_load_http(server.base) for _ in range(5)]
            browser = (page_load_browser(server.base, Path(tmp) / "chrome")
                       if CHROMIUM and CHROMEDRIVER else [])
            print(f"queue of {queued} pairs: page load over HTTP median {statistics.median(http) * 1000:.1f} ms"
                  + (f", in Chromium median {statistics.median(browser) * 1000:.0f} ms" if browser else
                     " (chromium not installed: no browser figure)"))
            done, wall, latencies = asyncio.run(load(server.base, server.csrf(), args.reviewers, queued,
                                                     args.seconds))
            lines = read_ledger_lines(ledger)
        finally:
            server.close()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    rate = done / wall
    print(f"{args.reviewers} reviewers for {wall:.1f} s: {done} decisions, {rate:.0f}/s, every one fsynced; "
          f"latency p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {latencies[-1] * 1000:.1f} ms; "
          f"ledger lines {len(lines)} (acknowledged {done})")
    result = {
        "pairs": args.pairs, "queued": queued, "reviewers": args.reviewers, "seconds": round(wall, 2),
        "decisions": done, "decisions_per_second": round(rate, 1), "ledger_lines": len(lines),
        "latency_ms": {"p50": round(p(0.5), 2), "p99": round(p(0.99), 2), "max": round(latencies[-1] * 1000, 2)},
        "page_load_http_ms": round(statistics.median(http) * 1000, 1),
        "page_load_chromium_ms": round(statistics.median(browser) * 1000, 1) if browser else None,
        "goals": {"decisions_per_second": 500, "p99_ms": 50, "page_load_ms": 1000},
        "cpus": os.cpu_count(),
    }
    assert len(lines) == done, "the ledger does not hold exactly the acknowledged decisions"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "review_app.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
