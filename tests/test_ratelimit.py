"""The per-minute budgets behind the teacher client's rate limits (the client's use of them is tested against the
real server in test_teacher.py)."""
from __future__ import annotations

import asyncio

import pytest

from curator.teacher.ratelimit import PerMinute, RateLimits, token_charge


def run(coro):
    return asyncio.run(coro)


def test_a_budget_holds_one_seconds_worth_and_refills():
    async def go():
        budget = PerMinute(600)  # 10 a second
        assert budget.capacity == 10
        first = await budget.take(10)
        second = await budget.take(5)
        return first, second

    first, second = run(go())
    assert first < 0.01
    assert 0.45 < second < 0.6


def test_a_charge_above_the_budget_goes_into_debt_that_the_next_waits_out():
    async def go():
        budget = PerMinute(60_000)  # 1,000 a second
        assert await budget.take(1_500) < 0.01  # a full budget lets it go, 500 in debt
        assert budget.level == pytest.approx(-500, abs=5)
        return await budget.take(1)

    assert 0.45 < run(go()) < 0.6


def test_settling_refunds_what_an_estimate_overcharged():
    async def go():
        budget = PerMinute(600)
        await budget.take(10)
        budget.settle(charged=10, used=4)
        return await budget.take(6)

    assert run(go()) < 0.05


def test_waiters_are_served_in_arrival_order():
    async def go():
        budget = PerMinute(1200)  # 20 a second, a budget of 20
        await budget.take(20)
        order: list[int] = []

        async def one(i: int, units: int) -> None:
            await budget.take(units)
            order.append(i)

        await asyncio.gather(one(0, 10), one(1, 1), one(2, 1))  # the small ones do not jump the queue
        return order

    assert run(go()) == [0, 1, 2]


def test_limits_not_set_are_free():
    limits = RateLimits.per_minute(None, None)
    assert not limits
    assert run(limits.wait(10_000)) == 0.0
    assert RateLimits.per_minute(60, None) and RateLimits.per_minute(None, 1000)
    assert token_charge(400, 100) == 201
    with pytest.raises(ValueError):
        PerMinute(0)
