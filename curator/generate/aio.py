"""Event-loop helpers shared by the generation runner and its worker processes."""
from __future__ import annotations

import asyncio
import gc
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
# Items started per turn of the event loop. Started all at once, no request would leave before every slot had been
# prepared (a quarter of a second for 1,000 slots) and the replies would come back in one burst.
LAUNCH_BATCH = 16


async def run_gradually(fn: Callable[[T], Awaitable[Any]], items: Sequence[T]) -> None:
    """`fn(item)` for every item, all concurrently, started LAUNCH_BATCH at a time with a turn of the event loop
    between, so the first requests are on the wire while later items are still being prepared. If one fails, or
    the caller is cancelled, those still running are cancelled."""
    started: list[asyncio.Future[Any]] = []
    try:
        for i in range(0, len(items), LAUNCH_BATCH):
            started += [asyncio.ensure_future(fn(item)) for item in items[i:i + LAUNCH_BATCH]]
            await asyncio.sleep(0)
        await asyncio.gather(*started)
    finally:
        for task in started:
            task.cancel()  # a no-op for those done


@contextmanager
def heap_frozen() -> Iterator[None]:
    """Let the garbage collector skip every object alive now (modules, the SDK's thousands of models, the spec and
    plan): with hundreds of requests in flight its full collections otherwise walk them all, about a tenth of the
    client's CPU."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
