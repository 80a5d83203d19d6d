"""Requests-per-minute and tokens-per-minute limits for the teacher client, kept on our side so that a run stays
under the provider's quota instead of learning it from 429s (which are still retried, honouring Retry-After).

A limit is a budget refilled continuously at `per_minute / 60` units a second that holds at most one second's
worth (at least one unit), so a run starts without a burst bigger than the provider would see in a second.
A request is charged before it is sent: one request, and for tokens its prompt (estimated at CHARS_PER_TOKEN, as
no tokenizer is downloaded) plus its `max_tokens`, the way OpenAI counts a request against its token limit. A
charge bigger than the budget waits for a full budget and leaves it in debt, which later requests wait out, so
the rate over a minute holds whatever the sizes; once the reply tells the real usage, the difference is settled.
Waiters are served in arrival order. Own code rather than `aiolimiter`: its buckets refuse a charge above their
capacity and cannot settle an estimate.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text


class PerMinute:
    """A budget of `per_minute` units a minute (see the module's docstring)."""

    def __init__(self, per_minute: float):
        if per_minute <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute}")
        self.per_s = per_minute / 60
        self.capacity = max(self.per_s, 1.0)
        self.level = self.capacity  # units available now; negative while in debt
        self._stamp = time.monotonic()
        self._turn = asyncio.Lock()  # FIFO: waiters take their charge in arrival order

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.per_s)
        self._stamp = now

    async def take(self, units: float) -> float:
        """Charge `units`, first waiting for the requests ahead and until the budget holds them (or is full, for a
        charge above it); returns the seconds waited."""
        started = time.monotonic()
        async with self._turn:
            self._refill()
            shortfall = min(units, self.capacity) - self.level
            if shortfall > 0:
                await asyncio.sleep(shortfall / self.per_s)
                self._refill()
            self.level -= units
        return time.monotonic() - started

    def settle(self, charged: float, used: float) -> None:
        """Correct an estimated charge once the real figure is known (a refund when less was used)."""
        self._refill()
        self.level = min(self.capacity, self.level + charged - used)


@dataclass
class RateLimits:
    """The client's limits; None for a limit not set. `wait` charges one request, `settle` its real tokens."""

    requests: PerMinute | None = None
    tokens: PerMinute | None = None

    @classmethod
    def per_minute(cls, requests: float | None, tokens: float | None) -> "RateLimits":
        return cls(PerMinute(requests) if requests else None, PerMinute(tokens) if tokens else None)

    def __bool__(self) -> bool:
        return self.requests is not None or self.tokens is not None

    async def wait(self, token_charge: int) -> float:
        """Seconds spent waiting before one request of `token_charge` estimated tokens may go."""
        waited = await self.requests.take(1) if self.requests else 0.0
        if self.tokens:
            waited += await self.tokens.take(token_charge)
        return waited

    def settle(self, token_charge: int, tokens_used: int) -> None:
        if self.tokens:
            self.tokens.settle(token_charge, tokens_used)


def token_charge(text_chars: int, max_tokens: int) -> int:
    """What a request counts against a tokens-per-minute limit before it is sent: its estimated prompt tokens
    plus the completion tokens it may use."""
    return text_chars // CHARS_PER_TOKEN + 1 + max_tokens
