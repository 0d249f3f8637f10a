"""Sends a session's coarse events to its workflow in order, off the hot path.

The pump hands an event over and moves on; a background task delivers the signals one by one so
a slow Temporal round trip never holds up audio.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import WorkflowHandle

from workflows.messages import GatewayEvent
from workflows.session_workflow import SessionWorkflow

log = logging.getLogger(__name__)


class WorkflowSignals:
    def __init__(self, *, handle: WorkflowHandle[SessionWorkflow, object]) -> None:
        self._handle = handle
        self._queue: asyncio.Queue[GatewayEvent | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._deliver(), name=f"signals-{handle.id}")

    def send(self, event: GatewayEvent) -> None:
        self._queue.put_nowait(event)

    async def close(self) -> None:
        """Delivers what is queued, then stops."""
        self._queue.put_nowait(None)
        await self._task

    async def _deliver(self) -> None:
        while (event := await self._queue.get()) is not None:
            for attempt in range(5):
                try:
                    await self._handle.signal(SessionWorkflow.gateway_event, event)
                    break
                except Exception as exc:  # a lost signal is logged, never fatal to the stream
                    if attempt == 4:
                        log.error("signal %s to %s lost: %s", event.kind, self._handle.id, exc)
                    else:
                        await asyncio.sleep(0.1 * 2**attempt)
