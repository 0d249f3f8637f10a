"""Commands from a session's workflow to the gateway that holds its stream.

They are activities on this gateway's own task queue: if the process is gone, the activity times
out and the workflow carries on without it. No home-made routing layer.
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.gateway.gateway import Gateway
from workflows.messages import (
    CLOSE_SESSION_STREAM,
    HOLD_SESSION,
    ROTATE_MODEL_LINK,
    CloseStreamInput,
    HoldInput,
    RotateInput,
)


class GatewayCommands:
    def __init__(self, *, gateway: Gateway) -> None:
        self.gw = gateway

    @activity.defn(name=CLOSE_SESSION_STREAM)
    async def close_session_stream(self, input: CloseStreamInput) -> None:
        """Records the session's end in its log and ends the client's stream. Fails if this
        process no longer holds that connection (the workflow then records the end itself)."""
        live = self.gw.live(input.session_id)
        if live is None or live.connection_id != input.connection_id:
            raise ApplicationError("connection not held here", non_retryable=True)
        await live.close(reason=input.reason, ended=True, notify=f"session ended: {input.reason}")
        self.gw.forget(live)

    @activity.defn(name=HOLD_SESSION)
    async def hold_session(self, input: HoldInput) -> str:
        """The lease: heartbeats while this process holds the connection, returns when it no
        longer does. If this process dies, the heartbeats stop and the workflow knows."""
        live = self.gw.live(input.session_id)
        if live is None or live.connection_id != input.connection_id:
            return "not_held"
        while not live.closed.is_set():
            activity.heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.closed.wait(), input.heartbeat_every_seconds)
        return "released"

    @activity.defn(name=ROTATE_MODEL_LINK)
    async def rotate_model_link(self, input: RotateInput) -> None:
        """A new model link, its conversation rebuilt from the log, at the next turn boundary."""
        live = self.gw.live(input.session_id)
        if live is None or live.connection_id != input.connection_id or live.pump is None:
            raise ApplicationError("connection not held here", non_retryable=True)
        await live.pump.rotate()
