"""Faults on the live path: the model link drops, the model's session expires, the model sends
an event type Earpiece has never heard of. Each is recorded, the client is told, and nothing
already received is lost."""

from __future__ import annotations

import asyncio
import json

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


async def test_link_drop_is_recorded_and_told_and_nothing_is_lost(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with simulator("socket_drop") as sim, gateway_for(sim.url) as gw:
        async with EarpieceClient.connect(gw.address) as client:
            session = (await client.start_session(tenant_id="acme", instructions=BRIEFING)).session
            async with client.attach(session.session_id) as stream:
                await speak(stream, "Tell me something.")
                seen = await until_state(stream, pb.SessionState.STATE_MODEL_LINK_LOST)
                assert any(m.WhichOneof("body") == "audio" for m in seen)
            await client.end_session(session.session_id)
        sent = [json.loads(t) for t in sim.sessions[0].sent_texts]
    events = [e async for e in store.read_events(session.session_id)]
    kinds = [e.kind for e in events]
    assert "model.link_lost" in kinds
    # Everything the model sent before the drop is in the log, in order.
    logged_types = [k.removeprefix("model.server.") for k in kinds if k.startswith("model.server.")]
    assert logged_types == [event["type"] for event in sent]
    assert kinds[-1] == "session.ended"


async def test_session_expiry_is_a_fatal_error_told_to_the_client(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator("session_expiry") as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        session = (await client.start_session(tenant_id="acme", instructions=BRIEFING)).session
        async with client.attach(session.session_id) as stream:
            seen = await until_state(stream, pb.SessionState.STATE_MODEL_LINK_LOST)
        errors = [m.error for m in seen if m.WhichOneof("body") == "error"]
        assert errors and errors[0].fatal and "session_expired" in errors[0].message
        await client.end_session(session.session_id)
    events = [e async for e in store.read_events(session.session_id)]
    classified = [e.payload for e in events if e.kind == "decision.model_error_classified"]
    assert classified == [
        {"code": "session_expired", "severity": "fatal", "error_seq": classified[0]["error_seq"]}
    ]


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
