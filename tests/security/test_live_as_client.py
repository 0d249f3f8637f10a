"""A whole live session under a client key, so its tenant scope (row-level security) is in force
on every store call the gateway makes for it: nothing may be refused or lost."""

from __future__ import annotations

from services.client import EarpieceClient
from services.demo import drive_tutoring_session
from services.gateway.server import RunningGateway, running_gateway
from services.runtime.app import model_link_factory
from services.runtime.config import Settings
from services.store.event_store import EventStore
from tests.gateway.live_helpers import simulator
from tests.security.conftest import Keys


async def test_a_tutoring_session_as_a_tenant_client_is_recorded_whole(
    gateway: RunningGateway, settings: Settings, store: EventStore, keys: Keys
) -> None:
    async with (
        simulator("tutoring") as sim,
        running_gateway(
            store=store,
            client=gateway.gateway.client,
            address="127.0.0.1:0",
            link_factory=model_link_factory(settings, simulator_url=sim.url),
        ) as live,
        EarpieceClient.connect(live.address, api_key=keys.a.client) as client,
    ):
        session_id, player = await drive_tutoring_session(client, tenant_id="", realtime=False)
    sim.raise_if_failed()
    record = await store.get_session(session_id)
    assert record is not None and record.tenant_id == keys.a.name
    kinds = [e.kind async for e in store.read_events(session_id)]
    assert kinds[0] == "session.started"
    assert "decision.tool_output" in kinds
    seqs = [e.seq async for e in store.read_events(session_id)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sum(len(a) for a in player.audio.values()) > 0
