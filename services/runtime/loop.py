"""Which asyncio event loop the service's processes run on.

uvloop (libuv) where it is installed, which is every Linux and macOS install of Earpiece: a
gateway is one event loop moving ~130 small messages a second per session (gRPC, the model's
WebSocket, Postgres), and the loop's own scheduling and socket calls were a large share of its
CPU under load (see the README's load benchmark). `EARPIECE_EVENT_LOOP=asyncio` keeps the
standard loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop unless asked for the standard one or uvloop is missing (None: asyncio's)."""
    if os.environ.get("EARPIECE_EVENT_LOOP", "uvloop").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # Windows has no uvloop
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on the loop `loop_factory` chooses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
