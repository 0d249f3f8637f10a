"""The live path end to end on real parts: gRPC over a port, the simulator over a real WebSocket
through the official SDK, embedded Postgres and the Temporal dev server.

A three-turn tutoring session (screen state changing between turns, one tool call) after which
the log must hold every event the simulator sent and every event Earpiece sent it, in order and
valid against the SDK's GA types, and every audio byte, exactly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.client import EarpieceClient
from services.demo import drive_tutoring_session
from services.gateway.model_pump import FORWARDED_KIND, forwarded_frames
from services.gateway.server import RunningGateway, running_gateway
from services.realtime.protocol import validate_client_event, validate_server_event
from services.realtime.simulator.scenario import load_builtin_scenario
from services.realtime.simulator.server import SimulatorServer, serve_simulator
from services.runtime.app import model_link_factory
from services.runtime.config import Settings
from services.store.event_store import EventStore
from services.store.events import StoredEvent


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    server = await serve_simulator(
        host="127.0.0.1",
        port=0,
        scenario=load_builtin_scenario("tutoring"),
        realtime_pacing=False,
    )
    yield server
    await server.stop()


@pytest.fixture
async def live_gateway(
    gateway: RunningGateway, simulator: SimulatorServer, settings: Settings
) -> AsyncIterator[RunningGateway]:
    """A gateway whose sessions talk to the simulator (the `gateway` fixture runs the worker)."""
    async with running_gateway(
        store=gateway.gateway.store,
        client=gateway.gateway.client,
        address="127.0.0.1:0",
        link_factory=model_link_factory(settings, simulator_url=simulator.url),
    ) as running:
        yield running


def with_audio(payload: dict[str, Any], audio: bytes, key: str) -> dict[str, Any]:
    """A logged event with its audio put back as the base64 the wire carried."""
    restored = {k: v for k, v in payload.items() if k != "audio"}
    restored[key] = base64.b64encode(audio).decode("ascii")
    return restored


async def test_three_turn_session_is_recorded_exactly(
    live_gateway: RunningGateway, simulator: SimulatorServer, store: EventStore
) -> None:
    async with EarpieceClient.connect(live_gateway.address) as client:
        session_id, player = await drive_tutoring_session(client, realtime=False)
    simulator.raise_if_failed()
    sim = simulator.sessions[0]

    events: list[StoredEvent] = [e async for e in store.read_events(session_id)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    input_audio = await store.read_audio_bytes(session_id, stream="input")
    output_audio = await store.read_audio_bytes(session_id, stream="output")
    by_seq = {e.seq: e for e in events}

    def audio_of(event: StoredEvent) -> bytes:
        assert event.audio is not None
        source = input_audio if event.audio.stream == "input" else output_audio
        return source[event.audio.offset : event.audio.offset + event.audio.length]

    # Every server event, in order, exactly as the simulator sent it.
    logged_server = []
    for e in events:
        if not e.kind.startswith("model.server."):
            continue
        payload = e.payload
        if e.kind == "model.server.response.output_audio.delta":
            payload = with_audio(payload, audio_of(e), "delta")
        logged_server.append(payload)
    assert logged_server == [json.loads(t) for t in sim.sent_texts]

    # Every client event, in order, exactly as the simulator received it.
    logged_client = []
    for e in events:
        if not e.kind.startswith("model.client."):
            continue
        if e.kind == FORWARDED_KIND:  # a run of microphone frames, one row
            for frame in forwarded_frames(e.payload):
                assert frame.event_seq is not None
                audio = base64.b64encode(audio_of(by_seq[frame.event_seq])).decode()
                append = {"type": "input_audio_buffer.append", "audio": audio}
                logged_client.append({**append, "event_id": frame.event_id})
            continue
        logged_client.append(e.payload)
    assert logged_client == [json.loads(t) for t in sim.received_texts]

    for payload in logged_server:
        validate_server_event(payload)
    for payload in logged_client:
        validate_client_event(payload)

    # Audio: what reached the client is what the simulator generated; the log holds both
    # directions byte for byte.
    received = b"".join(bytes(a) for a in player.audio.values())
    assert received == sim.all_generated_audio
    assert output_audio == sim.all_generated_audio
    assert input_audio == bytes(sim.input_audio)

    # Context was injected before each response, only when the screen changed, and the old
    # context item was deleted so screen states don't pile up.
    kinds = [e.kind for e in events]
    assert kinds.count("decision.context_injected") == 3
    assert kinds.count("decision.context_deleted") == 2
    assert "session.update" not in [json.loads(t)["type"] for t in sim.received_texts[1:]], (
        "context must never go through session.update"
    )

    # The tool ran once, after the tutor's speech was played, and its output came back.
    tool = next(e for e in events if e.kind == "decision.tool_output")
    assert tool.payload["name"] == "mark_step_complete"
    assert tool.payload["outcome"] == "succeeded"
    call = next(e for e in events if e.kind == "model.server.response.function_call_arguments.done")
    response_id = call.payload["response_id"]
    played = next(
        e
        for e in events
        if e.kind == "decision.playback_done" and e.payload["response_id"] == response_id
    )
    assert played.seq < tool.seq
    assert played.receive_time.isoformat() <= tool.payload["started_at"]
    rows = await store.pool.fetch(
        "SELECT step FROM lesson_progress WHERE session_id = $1", session_id
    )
    assert [r["step"] for r in rows] == [1]
    assert len(player.transcripts) == 4
