"""The turn-taking guarantees on real parts, one scenario each: tools run only after speech is
done, every call ends in exactly one recorded outcome, and response.create is serialised."""

from __future__ import annotations

import asyncio
from typing import Any

from services.client import EarpieceClient
from services.store.event_store import EventStore
from services.store.events import StoredEvent
from tests.gateway.live_helpers import GatewayFor, simulator, speak
from tests.gateway.test_session_api import BRIEFING
from workflows.messages import RunToolInput, ToolCall
from workflows.tools.activities import ToolActivities

ALL_TOOLS = ["check_answer", "get_hint", "open_exercise", "mark_step_complete"]
TUTOR = BRIEFING + " You call " + ", ".join(ALL_TOOLS) + " when they help the user."


async def run_scenario(
    gateway_for: GatewayFor,
    store: EventStore,
    name: str,
    *,
    responses: int,
    utterances: int = 1,
    screens: list[dict[str, Any]] | None = None,
) -> tuple[list[StoredEvent], Any]:
    """Speaks the scenario's lines and waits until the simulator has finished `responses`."""
    async with (
        simulator(name) as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(tenant_id="acme", instructions=TUTOR, tools=ALL_TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream:
            for turn in range(utterances):
                if screens:
                    await stream.send_screen_state(screens[turn])
                await speak(stream, sim.scenario.user_utterances[turn])
                if turn < utterances - 1:
                    await sim.sessions[0].wait_for_sent("response.done", count=turn + 1)
            await sim.sessions[0].wait_for_sent("response.done", count=responses, timeout_s=30)
            await asyncio.sleep(0.2)
            await client.end_session(session_id)
        sim.raise_if_failed()
        wire = sim.sessions[0]
    return [e async for e in store.read_events(session_id)], wire


def outcomes(events: list[StoredEvent]) -> dict[str, str]:
    """call id → its one recorded outcome (asserting there is only one)."""
    seen: dict[str, str] = {}
    for e in events:
        if e.kind in ("decision.tool_output", "decision.tool_dropped"):
            call_id = e.payload["call_id"]
            assert call_id not in seen, f"call {call_id} has two outcomes"
            seen[call_id] = e.payload.get("outcome", "dropped")
    return seen


def requested_calls(events: list[StoredEvent]) -> list[dict[str, Any]]:
    return [
        e.payload for e in events if e.kind == "model.server.response.function_call_arguments.done"
    ]


async def test_call_mid_audio_runs_only_after_playback(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    events, wire = await run_scenario(gateway_for, store, "mid_audio_call", responses=2)
    call = requested_calls(events)[0]
    call_seq = next(
        e.seq for e in events if e.kind == "model.server.response.function_call_arguments.done"
    )
    last_delta = max(
        e.seq
        for e in events
        if e.kind == "model.server.response.output_audio.delta"
        and e.payload["response_id"] == call["response_id"]
    )
    assert call_seq < last_delta, "the scenario emits the call while audio is still generated"
    played = next(
        e
        for e in events
        if e.kind == "decision.playback_done" and e.payload["response_id"] == call["response_id"]
    )
    tool = next(e for e in events if e.kind == "decision.tool_output")
    assert played.receive_time.isoformat() <= tool.payload["started_at"]
    assert outcomes(events) == {call["call_id"]: "succeeded"}
    # The output, then one response.create, and a spoken follow-up.
    sent_types = [e["type"] for e in wire.received_events()]
    after_output = sent_types[
        sent_types.index("conversation.item.create", sent_types.index("response.create") + 1) :
    ]
    assert "response.create" in after_output
    assert len(wire.sent_events("response.done")) == 2


async def test_tool_only_response_is_followed_by_speech(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    events, wire = await run_scenario(gateway_for, store, "tool_only", responses=2)
    [call] = requested_calls(events)
    assert outcomes(events) == {call["call_id"]: "succeeded"}
    playback = next(e.payload for e in events if e.kind == "decision.playback_done")
    assert playback["audio_ms"] == 0
    spoken = wire.sent_events("response.output_audio_transcript.done")
    assert [s["transcript"] for s in spoken] == ["Here is the next exercise."]


async def test_two_calls_get_two_outputs_and_one_response_create(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    events, wire = await run_scenario(gateway_for, store, "two_calls", responses=2)
    calls = requested_calls(events)
    assert [c["name"] for c in calls] == ["check_answer", "get_hint"]
    assert set(outcomes(events).values()) == {"succeeded"}
    received = [e["type"] for e in wire.received_events()]
    first_output = received.index("conversation.item.create", received.index("response.create"))
    tail = received[first_output:]
    assert tail.count("response.create") == 1
    assert wire.conversation.unanswered_call_ids() == []


async def test_active_response_race_never_surfaces_as_a_failure(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    events, wire = await run_scenario(gateway_for, store, "active_response_race", responses=2)
    errors = [e.payload for e in events if e.kind == "model.server.error"]
    assert [e["error"]["code"] for e in errors] == ["conversation_already_has_active_response"]
    classified = [e.payload for e in events if e.kind == "decision.model_error_classified"]
    assert classified[0]["severity"] == "recoverable"
    # Earpiece sent response.create again once the active response was done.
    assert len(wire.sent_events("response.done")) == 2


async def test_bad_arguments_and_failing_tools_still_answer_the_model(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    events, wire = await run_scenario(gateway_for, store, "bad_tool_calls", responses=4)
    calls = requested_calls(events)
    assert len(calls) == 3
    recorded = outcomes(events)
    assert [recorded[c["call_id"]] for c in calls] == ["failed", "failed", "failed"]
    outputs = {
        e.payload["call_id"]: e.payload["output"]
        for e in events
        if e.kind == "decision.tool_output"
    }
    assert "do not match its schema" in outputs[calls[0]["call_id"]]
    assert "not valid JSON" in outputs[calls[1]["call_id"]]
    assert "has no step" in outputs[calls[2]["call_id"]]
    assert wire.conversation.unanswered_call_ids() == []
    rows = await store.pool.fetchval(
        "SELECT count(*) FROM lesson_progress WHERE lesson_id = 'no-such-lesson'"
    )
    assert rows == 0


async def test_context_is_injected_only_when_the_screen_changed(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    same = {"screen": "exercise", "step": 1}
    events, _wire = await run_scenario(gateway_for, store, "two_calls", responses=2, screens=[same])
    injected = [e for e in events if e.kind == "decision.context_injected"]
    assert len(injected) == 1
    creates = [e.seq for e in events if e.kind == "model.client.response.create"]
    context_item = [
        e.seq
        for e in events
        if e.kind == "model.client.conversation.item.create" and "Context update:" in e.payload_json
    ]
    # Placed right before the first response.create; the follow-up had no new state.
    assert context_item[0] < creates[0]
    assert len(context_item) == 1


async def test_retried_tool_activity_changes_the_row_once(store: EventStore) -> None:
    tools = ToolActivities(pool=store.pool)
    call = ToolCall(
        call_id="call_retry",
        name="mark_step_complete",
        arguments='{"lesson_id": "fractions-101", "step": 2}',
        response_id="resp_1",
        seq=1,
    )
    request = RunToolInput(session_id="retry-session", call=call, idempotency_key="retry:call")
    first = await tools.run_tool(request)
    second = await tools.run_tool(request)
    assert '"already_recorded": false' in first
    assert '"already_recorded": true' in second
    rows = await store.pool.fetchval(
        "SELECT count(*) FROM lesson_progress WHERE idempotency_key = 'retry:call'"
    )
    assert rows == 1
