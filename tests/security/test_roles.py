"""Each role is held to its rights: client runs sessions, analyst reads and replays, admin does
everything for every tenant."""

from __future__ import annotations

import grpc
import pytest

from services.api.earpiece.v1 import session_pb2
from services.auth import Role, roles_for
from services.gateway.server import SERVICE_NAMES
from tests.security.conftest import ClientAs, Keys, start


async def denied(call: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value.details()
    return info.value.details() or ""


async def test_an_analyst_reads_and_replays_but_runs_nothing(
    client_as: ClientAs, keys: Keys
) -> None:
    async with client_as(keys.a.client) as alice:
        session_id = await start(alice)
    async with client_as(keys.a.analyst) as analyst:
        details = await denied(start(analyst))
        assert "role analyst" in details and "needs client or admin" in details
        await denied(analyst.end_session(session_id))
        await denied(_attach(analyst, session_id))
        # What it may do, for its own tenant.
        assert (await analyst.get_session(session_id)).session_id == session_id
        listed = await analyst.sessions.ListSessions(session_pb2.ListSessionsRequest())
        assert session_id in {s.session_id for s in listed.sessions}
        events = [e async for e in analyst.read_events(session_id)]
        assert [e.kind for e in events][:1] == ["session.started"]
    async with client_as(keys.a.client) as alice:
        await alice.end_session(session_id)


async def test_a_client_runs_sessions_but_does_not_replay_them(
    client_as: ClientAs, keys: Keys
) -> None:
    async with client_as(keys.a.client) as alice:
        session_id = await start(alice)
        details = await denied(_read(alice, session_id))
        assert "ReadEvents" in details and "needs analyst or admin" in details
        await alice.end_session(session_id)


async def test_an_admin_sees_every_tenant(client_as: ClientAs, keys: Keys) -> None:
    async with client_as(keys.a.client) as alice:
        session_id = await start(alice)
    async with client_as(keys.admin) as admin:
        assert (await admin.get_session(session_id)).tenant_id == keys.a.name
        assert [e.kind async for e in admin.read_events(session_id)][:1] == ["session.started"]
        everyone = await admin.sessions.ListSessions(session_pb2.ListSessionsRequest(page_size=500))
        assert everyone.sessions  # not limited to the admin key's own tenant
        theirs = await start(admin, tenant_id=keys.b.name)
        assert (await admin.get_session(theirs)).tenant_id == keys.b.name
        await admin.end_session(theirs)
        ended = await admin.end_session(session_id)
    assert ended.status == session_pb2.SESSION_STATUS_ENDED


def test_every_earpiece_rpc_has_a_rule_and_unknown_ones_are_admin_only() -> None:
    from services.api.earpiece.v1 import replay_pb2
    from services.api.earpiece.v1 import session_pb2 as spb

    for module in (spb, replay_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            assert service.full_name in SERVICE_NAMES
            for method in service.methods:
                assert roles_for(f"/{service.full_name}/{method.name}"), method.full_name
    assert roles_for("/earpiece.v1.SessionService/Connect") == {Role.CLIENT}
    assert roles_for("/earpiece.v1.ReplayService/ReadEvents") == {Role.ANALYST}
    assert roles_for("/earpiece.v1.Unheard/Anything") == frozenset()


async def _attach(client, session_id: str) -> None:
    async with client.attach(session_id):
        pass


async def _read(client, session_id: str) -> None:
    async for _ in client.read_events(session_id):
        pass
