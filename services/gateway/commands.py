"""Commands from a session's workflow to the gateway that holds its stream.

They are activities on this gateway's own task queue: if the process is gone, the activity times
out and the workflow carries on without it. No home-made routing layer.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.gateway.gateway import Gateway
from workflows.messages import (
    CLOSE_SESSION_STREAM,
    CloseStreamInput,
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
