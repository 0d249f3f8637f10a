"""A recorded session shared by the replay tests: recorded once per run through the real gRPC
API against the barge-in scenario (screen state, a long answer with two calls mid-audio, the
user cutting in, one call dropped, one run, a reply)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from services.api.earpiece.v1 import session_pb2 as spb
from services.client import EarpieceClient
from services.gateway.server import RunningGateway, running_gateway
from services.runtime.app import model_link_factory
from services.runtime.config import Settings
from services.store.event_store import EventStore
from services.store.events import StoredEvent
from tests.gateway.live_helpers import simulator, speak

TOOLS = ["highlight_element", "mark_step_complete"]
TUTOR = (
    "You are Maya, a patient voice tutor. You speak in short sentences and ask one question at "
    "a time. Before you call a tool you say one short sentence about what you are doing. "
    "Screen state arrives as user messages that begin with 'Context update:'. "
    "You call highlight_element and mark_step_complete when they help."
)


@dataclass
class Recorded:
    session_id: str
    tenant_id: str
    events: list[StoredEvent]


def _answers(seen: list[spb.ServerMessage]) -> int:
    """Assistant transcripts finished so far (one per response that spoke)."""
    return sum(
        1
        for m in seen
        if m.WhichOneof("body") == "transcript"
        and m.transcript.final
        and m.transcript.role == spb.Transcript.ROLE_ASSISTANT
    )


async def _wait(predicate, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


@asynccontextmanager
async def live_gateway(
    gateway: RunningGateway, settings: Settings, scenario: str
) -> AsyncIterator[EarpieceClient]:
    """A client of a gateway whose sessions talk to a real-time simulator of `scenario` (the
    session-wide `gateway` fixture runs the workflow worker they share)."""
    async with (
        simulator(scenario, realtime=True) as sim,
        running_gateway(
            store=gateway.gateway.store,
            client=gateway.gateway.client,
            address="127.0.0.1:0",
            link_factory=model_link_factory(settings, simulator_url=sim.url),
        ) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        yield client
        sim.raise_if_failed()


@pytest.fixture(scope="session")
async def recorded(gateway: RunningGateway, settings: Settings, store: EventStore) -> Recorded:
    seen: list[spb.ServerMessage] = []

    async def collect(stream) -> None:
        async for message in stream.messages():
            seen.append(message)

    def count(body: str) -> int:
        return sum(1 for m in seen if m.WhichOneof("body") == body)

    async with live_gateway(gateway, settings, "barge_in") as client:
        started = await client.start_session(tenant_id="replay-t", instructions=TUTOR, tools=TOOLS)
        session_id = started.session.session_id
        async with client.attach(session_id) as stream:
            receiver = asyncio.create_task(collect(stream))
            await stream.send_screen_state({"app": "fractions-101", "step": 1})
            await speak(stream, "Can you explain fractions?")
            await _wait(lambda: count("tool") >= 2)
            await speak(stream, "Wait, stop.")
            await _wait(lambda: count("stop_playback") >= 1)
            await _wait(lambda: _answers(seen) >= 2)
            await asyncio.sleep(0.5)
            await client.end_session(session_id)
            await asyncio.wait_for(receiver, timeout=10)
    events = [e async for e in store.read_events(session_id)]
    return Recorded(session_id, "replay-t", events)
