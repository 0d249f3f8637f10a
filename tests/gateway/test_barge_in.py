"""Barge-in on real parts: the user talks over the assistant. The client is told to stop, the
assistant item is cut to what was heard (clamped to what was generated, deleted at 0 ms), and
the interrupted response's calls are dropped unless the tool survives interruption."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.api.earpiece.v1 import session_pb2 as pb
from services.client import EarpieceClient, SessionStream
from services.store.event_store import EventStore
from tests.gateway.live_helpers import GatewayFor, simulator, speak
from tests.gateway.test_session_api import BRIEFING

TOOLS = ["highlight_element", "mark_step_complete"]
TUTOR = BRIEFING + " You call highlight_element and mark_step_complete when they help."


async def collect(stream: SessionStream, into: list[pb.ServerMessage]) -> None:
    async for message in stream.messages():
        into.append(message)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_barge_in_truncates_clamped_and_drops_the_interrupted_call(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    seen: list[pb.ServerMessage] = []
    async with (
        simulator("barge_in", realtime=True) as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(tenant_id="acme", instructions=TUTOR, tools=TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream:
            receiver = asyncio.create_task(collect(stream, seen))
            await speak(stream, "Can you explain fractions?")
            # Both calls arrive while the answer is still being spoken; then the user cuts in.
            await wait_until(lambda: sum(1 for m in seen if m.WhichOneof("body") == "tool") >= 2)
            await speak(stream, "Wait, stop.")
            await wait_until(lambda: any(m.WhichOneof("body") == "stop_playback" for m in seen))
            await wait_until(
                lambda: any(
                    m.WhichOneof("body") == "tool"
                    and m.tool.state in (pb.ToolStatus.STATE_SUCCEEDED, pb.ToolStatus.STATE_FAILED)
                    for m in seen
                )
            )
            await client.end_session(session_id)
            await asyncio.wait_for(receiver, timeout=10)
        sim.raise_if_failed()
        truncations = sim.sessions[0].truncations

    events = [e async for e in store.read_events(session_id)]
    kinds = [e.kind for e in events]
    cut = next(e.payload for e in events if e.kind == "decision.truncated")
    # Generation runs at 0.9x, so the wall-clock estimate overshoots what was generated.
    assert 0 < cut["audio_end_ms"] <= cut["generated_ms"]
    assert cut["audio_end_ms"] <= cut["heard_ms"]
    assert truncations == [(cut["item_id"], cut["audio_end_ms"])]
    assert "model.server.error" not in kinds
    dropped = [e.payload["name"] for e in events if e.kind == "decision.tool_dropped"]
    ran = [e.payload for e in events if e.kind == "decision.tool_output"]
    assert dropped == ["highlight_element"]
    assert [(r["name"], r["outcome"]) for r in ran] == [("mark_step_complete", "succeeded")]
    done = next(
        e
        for e in events
        if e.kind == "model.server.response.done" and e.payload["response"]["status"] == "cancelled"
    )
    assert done.payload["response"]["status_details"]["reason"] == "turn_detected"


async def test_barge_in_before_any_audio_deletes_the_item(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator("barge_in_before_audio", realtime=True) as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        session_id = (
            await client.start_session(tenant_id="acme", instructions=BRIEFING)
        ).session.session_id
        async with client.attach(session_id) as stream:
            await speak(stream, "Hello?")
            await sim.sessions[0].wait_for_sent("conversation.item.added", count=2)
            await speak(stream, "Actually, never mind.")
            await sim.sessions[0].wait_for_sent("conversation.item.deleted", count=1)
            await client.end_session(session_id)
        sim.raise_if_failed()
    events = [e async for e in store.read_events(session_id)]
    kinds = [e.kind for e in events]
    assert "decision.item_deleted" in kinds
    assert "decision.truncated" not in kinds
    assert "model.server.error" not in kinds
