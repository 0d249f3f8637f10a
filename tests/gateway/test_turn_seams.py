"""The turn guarantees at the seams, end to end on real parts: audio generated at 0.6x, 1x and
4x real time; clients that report, never report, stall or over-report playback; a barge-in
after generation finished; a stream that breaks mid-answer and re-attaches; a link drop with a
held call; EndSession with a call still held.

Every case also checks the log for the invariants that hold whatever happened: the seqs are
gapless; each call has exactly one outcome and is closed in the model's conversation exactly
once; a tool starts only after its response's playback finished; no response.create is sent
while the user holds the floor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest

from services.api.earpiece.v1 import session_pb2 as pb
from services.client import EarpieceClient
from services.gateway.turns import TurnConfig
from services.realtime.simulator.scenario import load_builtin_scenario
from services.realtime.simulator.server import SimulatorServer, serve_simulator
from services.store.event_store import EventStore
from services.store.events import StoredEvent
from tests.gateway.live_helpers import GatewayFor, speak
from tests.gateway.players import Mode, Player
from tests.gateway.test_tool_gate import ALL_TOOLS, TUTOR

TOOLS = [*ALL_TOOLS, "highlight_element"]


@asynccontextmanager
async def simulator_at(name: str, *, speed: float | None = None) -> AsyncIterator[SimulatorServer]:
    scenario = load_builtin_scenario(name)
    if speed is not None:
        scenario = dataclasses.replace(
            scenario, session=dataclasses.replace(scenario.session, generation_speed=speed)
        )
    server = await serve_simulator(
        host="127.0.0.1", port=0, scenario=scenario, realtime_pacing=True
    )
    try:
        yield server
    finally:
        await server.stop()


def by_kind(events: list[StoredEvent], kind: str) -> list[StoredEvent]:
    return [e for e in events if e.kind == kind]


def check_invariants(events: list[StoredEvent], received: list[dict[str, Any]]) -> None:
    """What must hold in every case. `received` is everything the model was sent, all links."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "the log has a gap"
    requested = {
        e.payload["call_id"]
        for e in by_kind(events, "model.server.response.function_call_arguments.done")
    }
    outcomes = [
        e.payload["call_id"]
        for e in events
        if e.kind in ("decision.tool_output", "decision.tool_dropped")
    ]
    assert sorted(outcomes) == sorted(requested), "each call has exactly one outcome"
    # Closed in the conversation once: outputs Earpiece sent (a rebuild re-sending a recorded
    # output into a new, empty conversation is that conversation's one closure).
    closures: dict[str, int] = {}
    for event in received:
        item = event.get("item", {})
        if (
            event["type"] == "conversation.item.create"
            and item.get("type") == "function_call_output"
        ):
            closures[item["call_id"]] = closures.get(item["call_id"], 0) + 1
    assert set(closures) == requested, "each call is closed in the conversation"
    # A tool starts only after its response's playback finished.
    played = {
        e.payload["response_id"]: e.receive_time for e in by_kind(events, "decision.playback_done")
    }
    response_of = {
        e.payload["call_id"]: e.payload["response_id"]
        for e in by_kind(events, "model.server.response.function_call_arguments.done")
    }
    for out in by_kind(events, "decision.tool_output"):
        started = out.payload["started_at"]
        assert started >= played[response_of[out.payload["call_id"]]].isoformat()
    # No response.create while the user holds the floor.
    floor = False
    for e in events:
        if e.kind == "model.server.input_audio_buffer.speech_started":
            floor = True
        elif e.kind in (
            "model.server.input_audio_buffer.committed",
            "model.server.input_audio_buffer.cleared",
        ):
            floor = False
        elif e.kind == "model.client.response.create":
            assert not floor, f"response.create at seq {e.seq} while the user was speaking"
    errors = [e.payload["error"].get("code") for e in by_kind(events, "model.server.error")]
    assert "conversation_already_has_active_response" not in errors


def all_received(sim: SimulatorServer) -> list[dict[str, Any]]:
    return [json.loads(t) for s in sim.sessions for t in s.received_texts]


async def read(store: EventStore, session_id: str) -> list[StoredEvent]:
    return [e async for e in store.read_events(session_id)]


def assistant_audio(message: pb.ServerMessage) -> bool:
    return message.WhichOneof("body") == "audio"


# ---- who decides that speech is done ----


@pytest.mark.parametrize(
    ("speed", "mode"),
    [
        (0.6, "reports"),
        (1.0, "reports"),
        (4.0, "reports"),
        (4.0, "never"),
        (4.0, "stall"),
        (0.6, "stall"),
        (4.0, "over"),
    ],
)
async def test_tool_runs_only_after_playback_as_the_client_reports_it(
    gateway_for: GatewayFor, store: EventStore, speed: float, mode: Mode
) -> None:
    async with (
        simulator_at("seam_held_call", speed=speed) as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(tenant_id="acme", instructions=TUTOR, tools=TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream, Player(stream, mode=mode, stall_s=3.0):
            await speak(stream, sim.scenario.user_utterances[0])
            await sim.sessions[0].wait_for_sent("response.done", count=2, timeout_s=40)
            await asyncio.sleep(0.3)
        await client.end_session(session_id)
        received = all_received(sim)
    events = await read(store, session_id)
    check_invariants(events, received)
    [call] = by_kind(events, "model.server.response.function_call_arguments.done")
    [played] = [
        e.payload
        for e in by_kind(events, "decision.playback_done")
        if e.payload["response_id"] == call.payload["response_id"]
    ]
    [output] = by_kind(events, "decision.tool_output")
    assert output.payload["outcome"] == "succeeded"
    first_audio = next(
        e.receive_time
        for e in by_kind(events, "model.server.response.output_audio.delta")
        if e.payload["response_id"] == call.payload["response_id"]
    )
    # Never before the audio could have been played out, whoever decided.
    earliest = first_audio.timestamp() + played["audio_ms"] / 1000
    slack = TurnConfig().finished_tolerance_ms / 1000 + 0.05
    assert datetime.fromisoformat(output.payload["started_at"]).timestamp() >= earliest - slack
    if mode == "never":
        assert played["decided_by"] == "estimated"
        return
    finished = next(
        e
        for e in by_kind(events, "client.playback")
        if e.payload["finished"] and e.payload["response_id"] == call.payload["response_id"]
    )
    assert output.payload["started_at"] >= finished.receive_time.isoformat()
    if mode == "over":
        # `finished` before the audio could have played is not believed: the estimate decides
        # once the reports stop; nothing is truncated past what was generated.
        assert played["decided_by"] in ("reported", "reports_stopped")
        assert by_kind(events, "decision.truncated") == []
        return
    # Once a client reports, its reports decide; the tool waits for its `finished`.
    assert played["decided_by"] == "reported"
    if mode == "stall":
        # The estimate (audio end + grace) would have fired seconds before the stalled client
        # finished; it did not decide.
        waited = (finished.receive_time - first_audio).total_seconds()
        assert waited >= played["audio_ms"] / 1000 + 2.5


# ---- barge-in after generation finished ----


async def test_barge_in_after_response_done_drops_calls_and_closes_them(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator_at("seam_late_barge_in") as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(tenant_id="acme", instructions=TUTOR, tools=TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream, Player(stream, mode="reports") as player:
            await speak(stream, sim.scenario.user_utterances[0])
            # Generated 4x faster than it plays: done (completed) while the client still plays.
            await sim.sessions[0].wait_for_sent("response.done", timeout_s=20)
            await player.wait_for(assistant_audio)
            await asyncio.sleep(1.0)
            # Spoken at a microphone's pace: the user holds the floor for seconds, and the
            # surviving tool's output arrives meanwhile.
            await speak(stream, sim.scenario.user_utterances[1], realtime=True)
            await sim.sessions[0].wait_for_sent("response.done", count=2, timeout_s=20)
            await asyncio.sleep(0.5)
        await client.end_session(session_id)
        wire = sim.sessions[0]
        received = all_received(sim)
    events = await read(store, session_id)
    check_invariants(events, received)
    first_done = json.loads(by_kind(events, "model.server.response.done")[0].payload_json)
    assert first_done["response"]["status"] == "completed"
    [played] = [
        e.payload
        for e in by_kind(events, "decision.playback_done")
        if e.payload["response_id"] == first_done["response"]["id"]
    ]
    assert played["interrupted"] is True
    names = {e.payload["call_id"]: e.payload["name"] for e in by_kind(events, "decision.tool_held")}
    dropped = {
        names[e.payload["call_id"]]: e.payload for e in by_kind(events, "decision.tool_dropped")
    }
    ran = {names[e.payload["call_id"]]: e.payload for e in by_kind(events, "decision.tool_output")}
    assert (
        set(dropped) == {"highlight_element"}
        and dropped["highlight_element"]["reason"] == "interrupted"
    )
    assert set(ran) == {"mark_step_complete"}
    # Both closed in the model's conversation; the user's turn got one response, which saw them.
    assert wire.conversation.unanswered_call_ids() == []
    assert len(by_kind(events, "model.client.response.create")) == 2
    assert len(wire.sent_events("response.created")) == 2


# ---- breaks ----


async def test_held_call_survives_a_stream_that_breaks_mid_answer(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator_at("seam_held_call", speed=1.0) as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(tenant_id="acme", instructions=TUTOR, tools=TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream, Player(stream) as player:
            await speak(stream, sim.scenario.user_utterances[0])
            await sim.sessions[0].wait_for_sent(
                "response.function_call_arguments.done", timeout_s=20
            )
            await player.wait_for(assistant_audio)
            stream.cancel()  # the client's connection breaks mid-answer...
        async with client.attach(session_id) as stream, Player(stream) as player:  # ...and is back
            second = await sim.wait_for_session(1, timeout_s=10)
            await second.wait_for_sent("response.done", timeout_s=30)
            await player.wait_for(assistant_audio)
        await client.end_session(session_id)
        received = second.received_events()
    events = await read(store, session_id)
    check_invariants(events, all_received(sim))
    [call] = by_kind(events, "model.server.response.function_call_arguments.done")
    [output] = by_kind(events, "decision.tool_output")
    assert output.payload["call_id"] == call.payload["call_id"]
    # The new link holds the call, then its output, then the follow-up is asked for once.
    items = [e["item"] for e in received if e["type"] == "conversation.item.create"]
    kinds = [i["type"] for i in items]
    assert kinds.index("function_call") < kinds.index("function_call_output")
    assert [e["type"] for e in received].count("response.create") == 1


async def test_link_drop_with_a_held_call_delivers_the_output_on_the_next_link(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator_at("seam_link_drop_held_call") as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(tenant_id="acme", instructions=TUTOR, tools=TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream, Player(stream) as player:
            await speak(stream, sim.scenario.user_utterances[0])
            await player.wait_for(
                lambda m: (
                    m.WhichOneof("body") == "state"
                    and m.state.state == pb.SessionState.STATE_MODEL_LINK_RESTORED
                )
            )
            second = await sim.wait_for_session(1)
            await second.wait_for_sent("response.done", timeout_s=30)
            await asyncio.sleep(0.3)
        await client.end_session(session_id)
        received = all_received(sim)
    events = await read(store, session_id)
    check_invariants(events, received)
    assert len(by_kind(events, "decision.tool_output")) == 1
    outputs = [
        e
        for s in sim.sessions
        for e in s.received_events("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1  # delivered once, into the link that exists
    assert second.conversation.unanswered_call_ids() == []


async def test_end_session_records_an_outcome_for_a_call_still_held(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator_at("seam_held_call", speed=4.0) as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(tenant_id="acme", instructions=TUTOR, tools=TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream, Player(stream, mode="never"):
            await speak(stream, sim.scenario.user_utterances[0])
            await sim.sessions[0].wait_for_sent("response.done", timeout_s=20)
            await client.end_session(session_id)  # the client is still playing the answer
    events = await read(store, session_id)
    [dropped] = by_kind(events, "decision.tool_dropped")
    assert dropped.payload["reason"] == "session_ended"
    assert by_kind(events, "decision.tool_output") == []
    assert events[-1].kind == "session.ended"
