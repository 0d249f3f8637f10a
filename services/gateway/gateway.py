"""The gateway: what one process holds for the sessions it serves.

It is also a Temporal worker on a task queue named for this process, so a session's workflow can
reach the process that holds the session's stream (worker-specific task queue pattern).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from services.api.earpiece.v1 import session_pb2 as pb
from services.gateway.handover import lost_holder
from services.gateway.live_session import LiveSession
from services.gateway.model_pump import ModelPump
from services.gateway.rebuild import load_plan
from services.gateway.signals import WorkflowSignals
from services.realtime.link import ModelLink, ModelLinkClosed
from services.store.event_store import EventStore
from workflows.messages import SettleRequest, ToolOutput
from workflows.session_workflow import SessionWorkflow
from workflows.tools.registry import TOOLS

log = logging.getLogger(__name__)


SETTLE_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# A crashed holder loses at most its unflushed tail (50 ms of events); far fewer than this.
MAX_VOID_SEQS = 10_000
VOID = {"reason": "the previous holder showed the client this seq, then died before it was durable"}

LinkFactory = Callable[[str | None, Callable[[str], None]], ModelLink]


def gateway_queue_name() -> str:
    return f"earpiece-gateway-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class Gateway:
    def __init__(
        self,
        *,
        store: EventStore,
        client: Client,
        queue: str | None = None,
        link_factory: LinkFactory | None = None,
    ) -> None:
        """`link_factory(model, on_send)` makes a model link (OpenAI or the simulator); without one,
        sessions are recorded but not connected to a model."""
        self.store = store
        self.client = client
        self.link_factory = link_factory
        self.queue = queue or gateway_queue_name()
        self.tools = frozenset(TOOLS)
        self._live: dict[str, LiveSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._attach_lock: dict[str, asyncio.Lock] = {}

    def workflow(self, session_id: str) -> WorkflowHandle[SessionWorkflow, object]:
        return self.client.get_workflow_handle_for(SessionWorkflow.run, session_id)

    def live(self, session_id: str) -> LiveSession | None:
        return self._live.get(session_id)

    async def open_live(
        self, *, session_id: str, config: dict[str, Any], last_seen_seq: int = 0
    ) -> LiveSession:
        """Attaches a new stream to the session. An older stream of the same session in this
        process is closed first, so the session keeps one writer (and one gapless seq)."""
        lock = self._attach_lock.setdefault(session_id, asyncio.Lock())
        async with lock:
            old = self._live.pop(session_id, None)
            if old is not None:
                await old.close(reason="replaced", notify="replaced by a newer connection")
            writer = await self.store.open_writer(session_id)
            handover = await lost_holder(self.store.pool, session_id, last_seq=writer.last_seq)
            if handover is not None:
                # The previous holder died holding the stream: that comes first in the log.
                # Seqs the client saw that never became durable are void (never another event's
                # name), then the loss itself is recorded.
                durable = writer.last_seq
                void = min(max(0, last_seen_seq - durable), MAX_VOID_SEQS)
                for _ in range(void):
                    writer.append(kind="gateway.void", source="gateway", payload=VOID)
                payload = {**handover.payload(), "void_seqs": [durable + 1, durable + void]}
                writer.append(kind="gateway.lost", source="gateway", payload=payload)
            live = LiveSession(
                session_id=session_id,
                connection_id=uuid.uuid4().hex,
                gateway_queue=self.queue,
                writer=writer,
                signals=WorkflowSignals(handle=self.workflow(session_id)),
                echo_gate=bool(config.get("echo_gate")),
            )
            self._live[session_id] = live
            if self.link_factory is not None:
                await self._open_model(live, config)
            return live

    async def _open_model(self, live: LiveSession, config: dict[str, Any]) -> None:
        assert self.link_factory is not None
        factory = self.link_factory
        pump = ModelPump(
            make_link=lambda on_send: factory(config.get("model"), on_send),
            load_plan=lambda: load_plan(self.store.pool, live.session_id),
            writer=live.writer,
            send_to_client=live.send,
            settle=lambda request: self.settle(live.session_id, request),
            connection_id=live.connection_id,
            config=config,
            tool_definitions=[
                TOOLS[name].realtime_definition() for name in config.get("tools", [])
            ],
        )
        live.pump = pump
        try:
            await pump.start()
        except ModelLinkClosed as exc:
            live.pump = None
            await pump.close()
            seq = live.writer.append(
                kind="model.link_failed", source="gateway", payload={"reason": exc.reason}
            )
            live.send(
                pb.ServerMessage(
                    seq=seq,
                    state=pb.SessionState(
                        state=pb.SessionState.STATE_MODEL_LINK_LOST,
                        detail=f"could not reach the Realtime model: {exc.reason}",
                    ),
                )
            )

    def settle(self, session_id: str, request: SettleRequest) -> None:
        """Asks the session's workflow for the outcomes of a settled response's calls, off the
        hot path, and hands them to whichever stream holds the session here when they come."""
        task = asyncio.create_task(self._settle(session_id, request), name=f"settle-{session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, session_id: str, request: SettleRequest) -> None:
        try:
            await self._settle_once(session_id, request)
        except Exception:
            log.exception("session %s: settling %s failed", session_id, request.response_id)

    async def _settle_once(self, session_id: str, request: SettleRequest) -> None:
        handle = self.workflow(session_id)
        for attempt, delay in enumerate((0.0, *SETTLE_BACKOFF_S)):
            await asyncio.sleep(delay)
            try:
                # By name, to give the result type: the workflow module's annotations are
                # strings, which the SDK cannot resolve here.
                outputs: list[ToolOutput] = await handle.execute_update(
                    "settle", request, result_type=list[ToolOutput]
                )
                break
            except WorkflowUpdateFailedError as exc:
                log.error("session %s: settle failed: %s", session_id, exc)
                return
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return  # the session's workflow is gone; its end closed every call
                log.warning("session %s: settle attempt %d: %s", session_id, attempt + 1, exc)
        else:
            # A later holder settles these calls again from the log.
            log.error("session %s: settle gave up after retries", session_id)
            return
        live = self.live(session_id)
        if live is not None and live.pump is not None:
            await live.pump.deliver_tool_outputs(outputs)

    def forget(self, live: LiveSession) -> None:
        if self._live.get(live.session_id) is live:
            del self._live[live.session_id]

    async def close_all(self, *, reason: str) -> None:
        for live in list(self._live.values()):
            await live.close(reason=reason, notify=f"gateway stopping: {reason}")
        self._live.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
