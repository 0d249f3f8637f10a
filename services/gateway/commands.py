"""Commands from a session's workflow to the gateway that holds its stream.

They are activities on this gateway's own task queue: if the process is gone, the activity times
out and the workflow carries on without it. No home-made routing layer.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.gateway.gateway import Gateway
from services.gateway.turns import outcome_record
from workflows.messages import (
    CLOSE_SESSION_STREAM,
    DELIVER_TOOL_OUTPUTS,
    CloseStreamInput,
    DeliverOutputsInput,
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
        if input.outcomes:
            # Calls still open get their one outcome before the end.
            if live.pump is not None:
                await live.pump.deliver_tool_outputs(input.outcomes)
            else:
                for outcome in input.outcomes:
                    kind, payload = outcome_record(outcome)
                    live.writer.append(kind=kind, source="workflow", payload=payload)
        await live.close(reason=input.reason, ended=True, notify=f"session ended: {input.reason}")
        self.gw.forget(live)

    @activity.defn(name=DELIVER_TOOL_OUTPUTS)
    async def deliver_tool_outputs(self, input: DeliverOutputsInput) -> None:
        """Hands the calls' outcomes to the session's turn machine, which records each once and
        closes each call in the model's conversation once (now, or on the next link); returns
        once they are durable, so a retry or a later holder never records them twice."""
        live = self.gw.live(input.session_id)
        if live is None or live.connection_id != input.connection_id or live.pump is None:
            raise ApplicationError("connection not held here", non_retryable=True)
        await live.pump.deliver_tool_outputs(input.outputs)
