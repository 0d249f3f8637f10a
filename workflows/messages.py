"""What crosses the workflow boundary: small dataclasses holding ids and small values only.

Temporal history is not an audio bus (see ARCHITECTURE.md, "two planes"): nothing here may carry
audio or large payloads; the event log in Postgres holds those and the workflow refers to seqs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

SESSION_TASK_QUEUE = "earpiece-sessions"

# Activities that run on a gateway's own task queue (worker-specific task queue pattern).
CLOSE_SESSION_STREAM = "close_session_stream"
# The holder's lease: runs as long as the holder has the stream, heartbeating; a holder that
# stops heartbeating (SIGKILLed, frozen, partitioned) is presumed gone.
HOLD_SESSION = "hold_session"
# Proactive model-link rotation before the model's session cap, at a turn boundary.
ROTATE_MODEL_LINK = "rotate_model_link"


class GatewayEventKind(StrEnum):
    """The coarse events a gateway signals: only what the workflow acts on, never frames.

    A response's turn reaches the workflow as one `settle` update (see SettleRequest), and only
    when it asked for tools. The kinds after DETACHED are older signals, kept so that older
    histories still decode."""

    ATTACHED = "attached"
    DETACHED = "detached"
    TURN_COMMITTED = "turn_committed"
    RESPONSE_DONE = "response_done"
    PLAYBACK_DONE = "playback_done"
    FUNCTION_CALL_REQUESTED = "function_call_requested"
    SCREEN_STATE_CHANGED = "screen_state_changed"
    LINK_LOST = "link_lost"


@dataclass(kw_only=True)
class SessionInput:
    session_id: str
    tenant_id: str
    idle_timeout_seconds: float = 600.0
    tools: list[str] = field(default_factory=list)
    # A holder that has not renewed its lease for this long is presumed gone.
    lease_seconds: float = 10.0
    # The model link is rotated at the first turn boundary after this long (the model's own
    # cap is 60 minutes).
    rotate_after_seconds: float = 55 * 60.0
    # Carried over by continue-as-new so a long session keeps its state in a fresh history.
    carried: SessionProgress | None = None


@dataclass(kw_only=True)
class SessionProgress:
    gateway_queue: str | None = None
    connection_id: str | None = None
    # Why the last holder let go: "client_detached", "gateway_lost" (its lease expired).
    detached_cause: str | None = None
    last_seq: int = 0
    events_seen: int = 0
    turns: int = 0
    responses: int = 0
    screen_changes: int = 0
    link_losses: int = 0
    # The outcome of every call decided lately (run or dropped), by call id: a call settled
    # again (a retry, a later holder) gets the same outcome and never runs twice.
    outcomes: dict[str, ToolOutput] = field(default_factory=dict)


@dataclass(kw_only=True)
class ToolCall:
    """A function call the model asked for; `arguments` is the model's JSON text (bounded)."""

    call_id: str
    name: str
    arguments: str
    response_id: str
    seq: int


@dataclass(kw_only=True)
class ToolOutput:
    """A call's one outcome. Every outcome, a dropped call's too, closes the call in the model's
    conversation with a function_call_output, so the model never holds an open call."""

    call_id: str
    name: str
    # "succeeded" or "failed" (the model gets the output so it can tell the user), or "dropped".
    outcome: str
    output: str
    # When the tool activity started (ISO 8601), so the log shows it began after speech.
    started_at: str = ""
    # For "dropped": why ("interrupted", "session_ended").
    reason: str = ""
    # When the tool activity finished (ISO 8601).
    finished_at: str = ""


DROP_REASONS = {
    "interrupted": "The user interrupted before this ran, so it did not run.",
    "session_ended": "The session ended before this finished; treat it as not done.",
}


def dropped_output(call: ToolCall, *, reason: str) -> ToolOutput:
    """The closure of a call that will never run: an output (rather than deleting the
    function_call item) so the conversation stays well-formed and the model knows the action
    did not happen and must not claim it did."""
    text = json.dumps({"status": "cancelled", "reason": DROP_REASONS[reason]})
    return ToolOutput(
        call_id=call.call_id, name=call.name, outcome="dropped", output=text, reason=reason
    )


@dataclass(kw_only=True)
class SettleRequest:
    """One response's turn, folded into one message: sent once its speech is done or was cut
    off, with its calls. The workflow answers with each call's one outcome (waiting for the
    tools it runs); turn and response counts since the last message ride along."""

    connection_id: str
    response_id: str
    interrupted: bool
    decided_by: str
    calls: list[ToolCall]
    turns: int = 0
    responses: int = 0


@dataclass(kw_only=True)
class RunToolInput:
    session_id: str
    call: ToolCall
    # session id + call id: a retried activity changes the world once.
    idempotency_key: str


@dataclass(kw_only=True)
class GatewayEvent:
    kind: GatewayEventKind
    # The seq in the session's event log of the event this summarises.
    seq: int
    connection_id: str = ""
    # Set on ATTACHED: where the workflow reaches the process that holds the session.
    gateway_queue: str = ""
    detail: dict[str, str] = field(default_factory=dict)
    # Set on FUNCTION_CALL_REQUESTED: every call of one response, sent once it is done.
    calls: list[ToolCall] = field(default_factory=list)


@dataclass(kw_only=True)
class EndRequest:
    reason: str = "ended_by_client"


@dataclass(kw_only=True)
class SessionOutcome:
    session_id: str
    reason: str
    turns: int
    responses: int


@dataclass(kw_only=True)
class SessionView:
    """What the `state` query answers."""

    session_id: str
    tenant_id: str
    status: str
    attached: bool
    gateway_queue: str | None
    progress: SessionProgress
    end_reason: str | None = None


@dataclass(kw_only=True)
class HoldInput:
    session_id: str
    connection_id: str
    heartbeat_every_seconds: float


@dataclass(kw_only=True)
class RotateInput:
    session_id: str
    connection_id: str


@dataclass(kw_only=True)
class CloseStreamInput:
    session_id: str
    connection_id: str
    reason: str


@dataclass(kw_only=True)
class RecordEndInput:
    session_id: str
    reason: str
    # True if no gateway recorded the end in the event log (none was attached).
    append_event: bool
