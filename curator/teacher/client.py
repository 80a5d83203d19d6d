"""Async client for an OpenAI-compatible teacher: completion or chat mode, bounded concurrency, counted retries,
and an on-disk response cache so that a rerun never pays twice for the same request.

Retries: 408, 409, 429, 5xx, timeouts and connection errors, up to `max_attempts` tries in all, sleeping
`Retry-After` when the server sends it, else exponential backoff with full jitter. The SDK's own retries are
off (`max_retries=0`) so every retry is ours and counted. Optional requests- and tokens-per-minute limits
(curator/teacher/ratelimit.py) hold every attempt back until the budget allows it.

Transport: one `AsyncOpenAI` over aiohttp (the SDK's `DefaultAioHttpClient`), whose cost per request stays flat
at hundreds of requests in flight (httpx's pool does work in proportion to its size on every request). Requests
go through the SDK's generic `post` with the body as built here, and the reply is read from its JSON: the typed
`create` methods walk every parameter through the SDK's type transforms and build pydantic models of the reply,
about a third of the client's CPU per request. Auth, timeouts and errors (`APIStatusError` with the response and
its headers, `APIConnectionError`, `APITimeoutError`) are the SDK's either way.
"""
from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from dataclasses import asdict, dataclass
from functools import cached_property
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import httpx2
import openai

from curator.hashing import sha256_json
from curator.redact import redact
from curator.teacher.ratelimit import RateLimits, token_charge

RETRYABLE_STATUS = {408, 409, 429}
PATHS = {"completion": "/completions", "chat": "/chat/completions"}
BEARER_AUTH: dict[str, Any] = {"security": {"bearer_auth": True}}  # what the SDK's `create` methods send


class TeacherError(Exception):
    """A request that failed for good (attempts used up or not retryable); the message is the reason."""


@dataclass(frozen=True)
class TeacherRequest:
    """One request, exactly as sent; its sha256 is the cache key and the pair's `prompt_hash`."""

    model: str
    sampling: dict[str, Any]
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    stop: tuple[str, ...] = ()
    response_format: dict[str, Any] | None = None  # chat mode: OpenAI `response_format`
    grammar: str | None = None  # completion mode: a GBNF grammar (llama.cpp servers), sent in the body

    def __post_init__(self):
        if self.response_format is not None and self.messages is None:
            raise ValueError("response_format needs chat mode (messages)")
        if self.grammar is not None and self.prompt is None:
            raise ValueError("grammar needs completion mode (prompt)")

    @property
    def mode(self) -> str:
        return "chat" if self.messages is not None else "completion"

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, **self.sampling}
        if self.mode == "chat":
            body["messages"] = [dict(m) for m in self.messages]
        else:
            body["prompt"] = self.prompt
        if self.stop:
            body["stop"] = list(self.stop)
        if self.response_format is not None:
            body["response_format"] = self.response_format
        if self.grammar is not None:
            body["grammar"] = self.grammar
        return body

    @cached_property
    def key(self) -> str:
        return sha256_json({"mode": self.mode, **self.payload()})

    @cached_property
    def body(self) -> bytes:
        """The payload as sent: compact UTF-8 JSON."""
        return json.dumps(self.payload(), ensure_ascii=False, separators=(",", ":")).encode()

    @cached_property
    def token_charge(self) -> int:
        """What this request counts against a tokens-per-minute limit before its reply tells the real usage."""
        chars = len(self.prompt) if self.prompt is not None else sum(len(m["content"]) for m in self.messages)
        return token_charge(chars, int(self.sampling.get("max_tokens") or 0))


@dataclass(frozen=True)
class TeacherReply:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@dataclass
class TeacherStats:
    """What the teacher cost: HTTP requests sent, retries among them, requests that failed for good, tokens, and
    the seconds requests waited for the rate limits (summed over requests)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rate_limited_s: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return {**asdict(self), "rate_limited_s": round(self.rate_limited_s, 3)}

    @classmethod
    def total(cls, parts: Iterable["TeacherStats"]) -> "TeacherStats":
        out = cls()
        for part in parts:
            for name, value in vars(part).items():
                setattr(out, name, getattr(out, name) + value)
        return out


class ResponseCache:
    """Replies keyed by request sha256 in a SQLite file (WAL, safe for several processes).

    Inside an event loop, the replies put during one turn of the loop are written in one transaction at its end
    (a transaction per reply was about 5% of the client's CPU at hundreds of requests a second); outside one,
    each is written at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per reply; a crash loses at most the last few
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL, created_at TEXT NOT NULL)")
        self._unwritten: dict[str, tuple[str, str, str]] = {}

    def get(self, key: str) -> TeacherReply | None:
        row = self._unwritten.get(key) or self._db.execute("SELECT key, reply FROM replies WHERE key = ?", (key,)).fetchone()
        return TeacherReply(**{**json.loads(row[1]), "cached": True}) if row else None

    def put(self, key: str, reply: TeacherReply) -> None:
        record = {k: v for k, v in asdict(reply).items() if k != "cached"}
        self._unwritten[key] = (key, json.dumps(record, ensure_ascii=False), datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if len(self._unwritten) > 1:
            return  # the write is already scheduled
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        """Write the replies put since the last flush, in one transaction."""
        if not self._unwritten:
            return
        rows, self._unwritten = list(self._unwritten.values()), {}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        self._db.close()


def retry_after_s(error: openai.APIStatusError) -> float | None:
    """The server's `Retry-After` (or `retry-after-ms`) in seconds, if it sent a usable one."""
    headers = error.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def is_retryable(error: Exception) -> bool:
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return True
    return isinstance(error, openai.APIStatusError) and (
        error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    )


def describe(error: BaseException, *secrets: str | None) -> str:
    """One line for a failed request: the HTTP status and message, or the error and what caused it (the SDK reports
    a dropped connection as a timeout; the cause tells which). The secrets, bearer tokens and URL credentials are
    scrubbed before the text is cut, so no part of a key an endpoint echoes survives."""
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {redact(str(error.message), *secrets)[:200]}"
    line = f"{type(error).__name__}: {redact(str(error), *secrets)[:200]}"
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    return line if root is error else f"{line} ({describe(root, *secrets)})"


def parse_reply(content: bytes, mode: str) -> TeacherReply:
    """The first choice and the usage of a completion or chat completion body; TeacherError when it is not one."""
    try:
        return reply_from_body(json.loads(content), mode)
    except ValueError as e:
        raise TeacherError(f"malformed reply: {type(e).__name__}: {str(e)[:200]}") from None


def reply_from_body(body: Any, mode: str) -> TeacherReply:
    """`parse_reply` for a body already decoded from JSON (e.g. a Batch API output line's `response.body`)."""
    try:
        choices = body["choices"]
        if not choices:
            raise TeacherError("malformed reply: no choices")
        choice = choices[0]
        text = choice["message"]["content"] if mode == "chat" else choice["text"]
        usage = body.get("usage") or {}
        return TeacherReply(
            text=text or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
        )
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise TeacherError(f"malformed reply: {type(e).__name__}: {str(e)[:200]}") from None


class TeacherClient:
    """Sends TeacherRequests to one OpenAI-compatible endpoint; `stats` accumulates what it cost."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_in_flight: int = 1,
        max_attempts: int = 4,
        timeout_s: float = 120.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        cache: ResponseCache | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        max_retry_after_s: float = 120.0,
    ):
        self.base_url = redact(base_url, api_key)  # what messages and run.json show
        self.max_in_flight = max_in_flight
        self._settings = {  # the constructor's arguments but the cache, for `shares`
            "base_url": base_url, "api_key": api_key, "max_in_flight": max_in_flight, "max_attempts": max_attempts,
            "timeout_s": timeout_s, "requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute,
            "backoff_base_s": backoff_base_s, "backoff_cap_s": backoff_cap_s, "max_retry_after_s": max_retry_after_s,
        }
        connections = httpx2.Limits(max_connections=max(max_in_flight, 1000))  # the SDK's 1000, or more if asked
        self._api = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s,
                                       http_client=openai.DefaultAioHttpClient(limits=connections))
        # absolute URLs and a body already encoded: the SDK then neither merges each path into the base URL nor
        # serializes the body (a tenth of its CPU per request)
        self._urls = {mode: base_url.rstrip("/") + path for mode, path in PATHS.items()}
        self._slots = asyncio.Semaphore(max_in_flight)
        self.limits = RateLimits.per_minute(requests_per_minute, tokens_per_minute)
        self.max_attempts = max_attempts
        self.cache = cache
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_retry_after_s = max_retry_after_s
        self.stats = TeacherStats()

    def shares(self, parts: int) -> list[dict[str, Any]]:
        """Keyword arguments for `parts` clients that together make this one (for worker processes): the same
        endpoint, key and retry policy, with the requests in flight and the rate limits divided between them; each
        opens the cache file itself (`cache_path`), so the replies put so far are written to it first."""
        if self.cache is not None:
            self.cache.flush()
        rpm, tpm = self._settings["requests_per_minute"], self._settings["tokens_per_minute"]
        return [
            {**self._settings, "max_in_flight": self.max_in_flight // parts + (i < self.max_in_flight % parts),
             "requests_per_minute": rpm / parts if rpm else None, "tokens_per_minute": tpm / parts if tpm else None,
             "cache_path": self.cache.path if self.cache is not None else None}
            for i in range(parts)
        ]

    async def check_reachable(self) -> list[str]:
        """Model ids the endpoint serves (`GET /models`); raises TeacherError when it cannot be reached."""
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                return [m.id async for m in self._api.models.list()]
            except openai.APIError as e:
                last = e
                if not is_retryable(e):
                    break
                await asyncio.sleep(self.backoff_s(attempt, e))
        raise TeacherError(f"teacher at {self.base_url} not reachable: {describe(last, self._settings['api_key'])}")

    def backoff_s(self, attempt: int, error: Exception) -> float:
        """Seconds to wait before try `attempt + 1`: Retry-After when given, else full jitter."""
        if isinstance(error, openai.APIStatusError):
            hinted = retry_after_s(error)
            if hinted is not None:
                return min(hinted, self.max_retry_after_s)
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)))

    async def complete(self, request: TeacherRequest) -> TeacherReply:
        """The teacher's reply (from the cache when this exact request was answered before)."""
        if self.cache is not None and (hit := self.cache.get(request.key)) is not None:
            self.stats.cache_hits += 1
            return hit
        attempt = 0
        while True:
            attempt += 1
            if self.limits:  # every attempt is a request to the provider
                waited = await self.limits.wait(request.token_charge)  # (not `+= await`: that adds to a stale total)
                self.stats.rate_limited_s += waited
            try:
                async with self._slots:
                    self.stats.requests += 1
                    reply = await self._send(request)
            except openai.APIError as e:
                if not is_retryable(e) or attempt == self.max_attempts:
                    self.stats.failures += 1
                    raise TeacherError(f"{describe(e, self._settings['api_key'])} (after {attempt} attempt(s))") from None
                self.stats.retries += 1
                await asyncio.sleep(self.backoff_s(attempt, e))
                continue
            except TeacherError:
                self.stats.failures += 1
                raise
            self.stats.prompt_tokens += reply.prompt_tokens
            self.stats.completion_tokens += reply.completion_tokens
            self.limits.settle(request.token_charge, reply.prompt_tokens + reply.completion_tokens)
            if self.cache is not None:
                self.cache.put(request.key, reply)
            return reply

    async def _send(self, request: TeacherRequest) -> TeacherReply:
        content = await self._api.post(self._urls[request.mode], content=request.body, cast_to=bytes, options=BEARER_AUTH)
        return parse_reply(content, request.mode)

    async def close(self) -> None:
        await self._api.close()
