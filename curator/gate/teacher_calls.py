"""Teacher calls for model-backed gate checks (judge, self-consistency): one batch of requests through
`TeacherClient`, so retries, rate limits, usage counting and the response cache are the generator's.

Replies come from the response cache when the same request was answered before: a rerun of the gate makes
no new calls, and when every reply is cached no embedded server is started. A request that fails for good
stops the gate with one line (what was paid for is cached, so a rerun resumes).
"""
from __future__ import annotations

import asyncio
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from curator.embedded_models import cache_dir
from curator.errors import CuratorError
from curator.spec import Spec
from curator.teacher.client import ResponseCache, TeacherClient, TeacherError, TeacherReply, TeacherRequest
from curator.teacher.embedded import embedded_teacher

PLACEHOLDER_API_KEY = "sk-no-key"  # for servers without auth (the embedded one, most local ones)


@dataclass(frozen=True)
class Endpoint:
    """Where a check sends its requests and how fast; `base_url` None starts the embedded server for `model`."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_in_flight: int = 1
    max_attempts: int = 4
    timeout_s: float = 120.0
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    @classmethod
    def of_teacher(cls, spec: Spec) -> "Endpoint":
        t = spec.teacher
        return cls(t.model, t.base_url, t.api_key_env, t.max_in_flight, t.max_attempts, t.timeout_s,
                   t.requests_per_minute, t.tokens_per_minute)

    @property
    def name(self) -> str:
        return self.base_url or "embedded"


def response_cache_path(configured: str | None) -> Path:
    """The configured cache file, else the one `curator generate` uses by default."""
    return Path(configured) if configured else cache_dir() / "teacher-responses.sqlite"


@contextmanager
def _serving(endpoint: Endpoint) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of the endpoint, starting the embedded server for the block when it has no URL."""
    if endpoint.base_url:
        yield endpoint.base_url, os.environ.get(endpoint.api_key_env) or PLACEHOLDER_API_KEY
        return
    with embedded_teacher(endpoint.model, cache_dir() / "gate-teacher-server.log") as base_url:
        yield base_url, PLACEHOLDER_API_KEY


async def _complete_all(client: TeacherClient, requests: list[TeacherRequest]) -> list[TeacherReply | TeacherError]:
    async def one(request: TeacherRequest) -> TeacherReply | TeacherError:
        try:
            return await client.complete(request)
        except TeacherError as e:
            return e

    try:
        await client.check_reachable()
        return await asyncio.gather(*(one(r) for r in requests))
    finally:
        await client.close()


def ask_all(check: str, endpoint: Endpoint, requests: list[TeacherRequest], cache_path: Path) -> tuple[list[TeacherReply], dict]:
    """The reply to every request, in order, and what they cost (`calls` sent, `cached` replies, tokens, seconds).

    CuratorError naming `check` when the endpoint cannot be reached or a request fails for good."""
    started = time.perf_counter()
    cache = ResponseCache(cache_path)
    try:
        cached = [cache.get(r.key) for r in requests]
        if all(hit is not None for hit in cached):
            replies, usage = cached, {"requests": 0, "cache_hits": len(requests)}
        else:
            with _serving(endpoint) as (base_url, api_key):
                client = TeacherClient(base_url, api_key, max_in_flight=endpoint.max_in_flight,
                                       max_attempts=endpoint.max_attempts, timeout_s=endpoint.timeout_s,
                                       requests_per_minute=endpoint.requests_per_minute,
                                       tokens_per_minute=endpoint.tokens_per_minute, cache=cache)
                try:
                    replies = asyncio.run(_complete_all(client, requests))
                except TeacherError as e:
                    hint = f" (is ${endpoint.api_key_env} set?)" if endpoint.base_url else ""
                    raise CuratorError(f"{check}: {e}{hint}") from None
                usage = client.stats.as_dict()
    finally:
        cache.close()
    failed = [r for r in replies if isinstance(r, TeacherError)]
    if failed:
        raise CuratorError(f"{check}: {len(failed)} of {len(requests)} teacher calls failed (first: {failed[0]}); "
                           "replies so far are cached, rerun to resume")
    return replies, {
        "endpoint": endpoint.name, "model": endpoint.model,
        "calls": usage.get("requests", 0), "cached": usage.get("cache_hits", 0),
        "retries": usage.get("retries", 0), "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0), "rate_limited_s": usage.get("rate_limited_s", 0.0),
        "seconds": round(time.perf_counter() - started, 3),
    }
