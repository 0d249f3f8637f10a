"""Faults on the live path: the model link drops, the model's session expires, the model sends
an event type Earpiece has never heard of. Each is recorded, the client is told, and nothing
already received is lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from services.api.earpiece.v1 import session_pb2 as pb
from services.client import EarpieceClient, SessionStream
from services.store.event_store import EventStore
from tests.gateway.live_helpers import GatewayFor, simulator, speak
from tests.gateway.test_session_api import BRIEFING


async def until_state(stream: SessionStream, state: int) -> list[pb.ServerMessage]:
    seen = []
    async with asyncio.timeout(20):
        async for message in stream.messages():
            seen.append(message)
            if message.WhichOneof("body") == "state" and message.state.state == state:
                return seen
    raise AssertionError("stream ended first")


def rebuilt_items(received: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role or type, text) of each conversation item a new link was sent, in order."""
    out = []
    for event in received:
        if event["type"] != "conversation.item.create":
            continue
        item = event["item"]
        if item["type"] == "message":
            out.append((item["role"], item["content"][0]["text"]))
        else:
            out.append((item["type"], item.get("call_id", "")))
    return out


async def test_link_drop_rebuilds_the_conversation_in_place(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with simulator("socket_drop") as sim, gateway_for(sim.url) as gw:
        async with EarpieceClient.connect(gw.address) as client:
            session = (await client.start_session(tenant_id="acme", instructions=BRIEFING)).session
            async with client.attach(session.session_id) as stream:
                await speak(stream, "Tell me something.")
                seen = await until_state(stream, pb.SessionState.STATE_MODEL_LINK_LOST)
                assert any(m.WhichOneof("body") == "audio" for m in seen)
                await until_state(stream, pb.SessionState.STATE_MODEL_LINK_RESTORED)
                # The user is heard again, and hears the next answer.
                await speak(stream, "Are you still there?")
                second = await sim.wait_for_session(1)
                await second.wait_for_sent("response.done", timeout_s=20)
                async with asyncio.timeout(10):
                    async for m in stream.messages():
                        if m.WhichOneof("body") == "audio":
                            break
            await client.end_session(session.session_id)
        first_sent = [json.loads(t) for t in sim.sessions[0].sent_texts]
        received = second.received_events()
    events = [e async for e in store.read_events(session.session_id)]
    kinds = [e.kind for e in events]
    lost = kinds.index("model.link_lost")
    # Everything the model sent before the drop is in the log, in order.
    logged = [
        k.removeprefix("model.server.") for k in kinds[:lost] if k.startswith("model.server.")
    ]
    assert logged == [event["type"] for event in first_sent]
    # The new link: the same configuration, then the conversation so far, in order.
    assert received[0]["type"] == "session.update"
    assert (
        received[0]["session"]["instructions"]
        == sim.sessions[0].received_events("session.update")[0]["session"]["instructions"]
    )
    assert rebuilt_items(received)[:2] == [
        ("user", "Tell me something."),
        ("assistant", "Fractions are parts of a whole."),
    ]
    [rebuilt] = [e.payload for e in events if e.kind == "model.link_rebuilt"]
    assert rebuilt["cause"] == "link_drop" and rebuilt["items_replayed"] == 2
    assert kinds[-1] == "session.ended"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_session_expiry_gets_a_new_link_with_the_conversation(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator("session_expiry") as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        session = (await client.start_session(tenant_id="acme", instructions=BRIEFING)).session
        async with client.attach(session.session_id) as stream:
            await stream.send_screen_state({"screen": "fractions", "step": 2})
            await speak(stream, "Are you there?")
            await sim.sessions[0].wait_for_sent("response.done", timeout_s=20)
            await until_state(stream, pb.SessionState.STATE_MODEL_LINK_LOST)
            await until_state(stream, pb.SessionState.STATE_MODEL_LINK_RESTORED)
            second = await sim.wait_for_session(1)
        await client.end_session(session.session_id)
        received = second.received_events()
    items = rebuilt_items(received)
    assert items[0] == ("user", "Are you there?")
    assert items[1] == ("assistant", "Yes, I'm here.")
    # The latest screen state, once, as the last item.
    assert items[-1][0] == "user" and items[-1][1].startswith("Context update:")
    assert '"step": 2' in items[-1][1]
    events = [e async for e in store.read_events(session.session_id)]
    classified = [e.payload for e in events if e.kind == "decision.model_error_classified"]
    assert [c["code"] for c in classified] == ["session_expired"]
    [rebuilt] = [e.payload for e in events if e.kind == "model.link_rebuilt"]
    assert rebuilt["cause"] == "session_expired"


async def test_unknown_model_event_is_recorded_and_the_pump_goes_on(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    """A hand-written server (not the simulator, which only sends valid GA events) sends an
    event type from the future between two known ones."""
    future = json.dumps({"type": "response.hologram.delta", "event_id": "e2", "beam": 1})

    async def handler(ws: ServerConnection) -> None:
        await ws.send(
            json.dumps({"type": "rate_limits.updated", "event_id": "e1", "rate_limits": []})
        )
        await ws.send(future)
        await ws.send(
            json.dumps({"type": "rate_limits.updated", "event_id": "e3", "rate_limits": []})
        )
        async for _ in ws:
            pass

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with (
            gateway_for(f"ws://127.0.0.1:{port}/v1") as gw,
            EarpieceClient.connect(gw.address) as client,
        ):
            session = (await client.start_session(tenant_id="acme", instructions=BRIEFING)).session
            async with client.attach(session.session_id) as stream:
                marker = await stream.send_text("hello")
                async with asyncio.timeout(10):
                    async for m in stream.messages():
                        if m.WhichOneof("body") == "ack" and m.ack.client_event_id == marker:
                            break
                await asyncio.sleep(0.3)
            await client.end_session(session.session_id)
    events = [e async for e in store.read_events(session.session_id)]
    server_events = [e for e in events if e.kind.startswith("model.server.")]
    assert [e.kind for e in server_events] == [
        "model.server.rate_limits.updated",
        "model.server.response.hologram.delta",
        "model.server.rate_limits.updated",
    ]
    assert server_events[1].payload_json == future


async def test_rotation_before_the_cap_rebuilds_at_a_turn_boundary(
    gateway_for: GatewayFor, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EARPIECE_ROTATE_AFTER_S", "2")  # the model's cap, made short
    async with (
        simulator("tutoring") as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        session = (await client.start_session(tenant_id="acme", instructions=BRIEFING)).session
        async with client.attach(session.session_id) as stream:
            await stream.send_text("What is a fraction?")
            await sim.sessions[0].wait_for_sent("response.done", timeout_s=20)
            # The answer plays (estimated), then at the turn boundary the link is rotated.
            seen = await until_state(stream, pb.SessionState.STATE_MODEL_LINK_RESTORED)
            second = await sim.wait_for_session(1)
            await stream.send_text("And a denominator?")
            await second.wait_for_sent("response.done", timeout_s=20)
        await client.end_session(session.session_id)
        first_answer = sim.sessions[0].sent_events("response.output_audio_transcript.done")
        received = second.received_events()
    states = [m.state.detail for m in seen if m.WhichOneof("body") == "state"]
    assert states == ["rotation", "rotation"]  # LOST, then RESTORED
    events = [e async for e in store.read_events(session.session_id)]
    [rebuilt] = [e.payload for e in events if e.kind == "model.link_rebuilt"]
    assert rebuilt["cause"] == "rotation"
    # Never mid-answer: the rotation came after the answer's playback was decided.
    kinds = [e.kind for e in events]
    assert kinds.index("decision.playback_done") < kinds.index("model.link_rebuilt")
    assert rebuilt_items(received)[:2] == [
        ("user", "What is a fraction?"),
        ("assistant", first_answer[0]["transcript"]),
    ]


async def test_client_reconnect_gets_the_conversation_back(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator("tutoring") as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        session = (await client.start_session(tenant_id="acme", instructions=BRIEFING)).session
        async with client.attach(session.session_id) as stream:
            await stream.send_text("What is a fraction?")
            async with asyncio.timeout(20):
                async for m in stream.messages():
                    if m.WhichOneof("body") == "transcript" and m.transcript.final:
                        # Heard all of it (a stream closed mid-answer is rebuilt as cut).
                        await stream.report_playback(
                            m.transcript.response_id, played_ms=60_000, finished=True
                        )
                        break
            await asyncio.sleep(0.3)
        async with client.attach(session.session_id) as stream:  # the client is back
            second = await sim.wait_for_session(1)
            await stream.send_text("And a denominator?")
            await second.wait_for_sent("response.done", timeout_s=20)
            async with asyncio.timeout(10):
                async for m in stream.messages():
                    if m.WhichOneof("body") == "audio":
                        break
        await client.end_session(session.session_id)
        first_answer = sim.sessions[0].sent_events("response.output_audio_transcript.done")
        received = second.received_events()
    items = rebuilt_items(received)
    assert items[0] == ("user", "What is a fraction?")
    assert items[1] == ("assistant", first_answer[0]["transcript"])
    events = [e async for e in store.read_events(session.session_id)]
    [rebuilt] = [e.payload for e in events if e.kind == "model.link_rebuilt"]
    assert rebuilt["cause"] == "attach" and rebuilt["items_replayed"] == 2
