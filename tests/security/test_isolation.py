"""Nothing of one tenant is visible to another, down to whether a session id exists."""

from __future__ import annotations

import uuid

import grpc
import pytest

from services.api.earpiece.v1 import replay_pb2, session_pb2
from services.client import EarpieceClient
from tests.security.conftest import ClientAs, Keys, start


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


def same_refusal(
    theirs: grpc.aio.AioRpcError, unknown: grpc.aio.AioRpcError, *, ids: tuple[str, str]
) -> None:
    """Another tenant's session and a made-up id get the same code and message (the id aside)."""
    assert theirs.code() == unknown.code() == grpc.StatusCode.NOT_FOUND
    assert (theirs.details() or "").replace(ids[0], "ID") == (unknown.details() or "").replace(
        ids[1], "ID"
    )


async def read_all(client: EarpieceClient, session_id: str) -> list[replay_pb2.Event]:
    return [e async for e in client.read_events(session_id)]


async def test_get_end_and_read_events_of_another_tenant_are_not_found(
    client_as: ClientAs, keys: Keys
) -> None:
    unknown = f"unknown-{uuid.uuid4().hex[:8]}"
    async with client_as(keys.a.client) as alice:
        theirs = await start(alice)
    async with client_as(keys.b.client) as bob:
        same_refusal(
            await refused(bob.get_session(theirs)),
            await refused(bob.get_session(unknown)),
            ids=(theirs, unknown),
        )
        same_refusal(
            await refused(bob.end_session(theirs)),
            await refused(bob.end_session(unknown)),
            ids=(theirs, unknown),
        )
    async with client_as(keys.b.analyst) as bob_analyst:
        same_refusal(
            await refused(read_all(bob_analyst, theirs)),
            await refused(read_all(bob_analyst, unknown)),
            ids=(theirs, unknown),
        )
    async with client_as(keys.a.client) as alice:
        assert (await alice.get_session(theirs)).status == session_pb2.SESSION_STATUS_ACTIVE
        await alice.end_session(theirs)


async def test_list_shows_only_the_callers_tenant(client_as: ClientAs, keys: Keys) -> None:
    async with client_as(keys.a.client) as alice:
        mine = {await start(alice) for _ in range(2)}
    async with client_as(keys.b.client) as bob:
        bobs = await start(bob)
        listed = await bob.sessions.ListSessions(session_pb2.ListSessionsRequest(page_size=100))
        assert {s.session_id for s in listed.sessions} == {bobs}
        assert {s.tenant_id for s in listed.sessions} == {keys.b.name}
        error = await refused(
            bob.sessions.ListSessions(session_pb2.ListSessionsRequest(tenant_id=keys.a.name))
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert keys.b.name in (error.details() or "")  # says which tenant the key may act for
    async with client_as(keys.b.analyst) as bob_analyst:
        listed = await bob_analyst.sessions.ListSessions(session_pb2.ListSessionsRequest())
        assert {s.session_id for s in listed.sessions} == {bobs}
    async with client_as(keys.admin) as admin:
        listed = await admin.sessions.ListSessions(
            session_pb2.ListSessionsRequest(tenant_id=keys.a.name, page_size=100)
        )
        assert mine <= {s.session_id for s in listed.sessions}
        assert {s.tenant_id for s in listed.sessions} == {keys.a.name}


async def test_start_for_another_tenant_is_permission_denied(
    client_as: ClientAs, keys: Keys
) -> None:
    async with client_as(keys.b.client) as bob:
        error = await refused(bob.start_session(tenant_id=keys.a.name, instructions="x" * 80))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "leave tenant_id empty" in (error.details() or "")
        # Empty, or its own name, is its own tenant.
        own = (await bob.start_session(tenant_id=keys.b.name, instructions=BRIEFING_)).session
        assert own.tenant_id == keys.b.name


async def test_idempotent_start_with_another_tenants_id_says_nothing_about_it(
    client_as: ClientAs, keys: Keys
) -> None:
    chosen = f"chosen-{uuid.uuid4().hex[:8]}"
    async with client_as(keys.a.client) as alice:
        await start(alice, session_id=chosen)
    async with client_as(keys.b.client) as bob:
        error = await refused(start(bob, session_id=chosen))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    details = error.details() or ""
    assert "already in use" in details
    assert keys.a.name not in details and "tenant" not in details
    # An admin naming another tenant is told the same, no more.
    async with client_as(keys.admin) as admin:
        error = await refused(start(admin, session_id=chosen, tenant_id=keys.b.name))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (error.details() or "") == details
    # Alice's retry is still idempotent.
    async with client_as(keys.a.client) as alice:
        assert await start(alice, session_id=chosen) == chosen
        await alice.end_session(chosen)


async def test_connect_to_another_tenants_session_cannot_take_it_over(
    client_as: ClientAs, keys: Keys
) -> None:
    unknown = f"unknown-{uuid.uuid4().hex[:8]}"
    async with client_as(keys.a.client) as alice:
        theirs = await start(alice)
        async with alice.attach(theirs) as stream:
            async with client_as(keys.b.client) as bob:
                same_refusal(
                    await refused(_attach(bob, theirs)),
                    await refused(_attach(bob, unknown)),
                    ids=(theirs, unknown),
                )
            # Alice's stream is untouched: it still takes messages and acknowledges them.
            sent = await stream.send_text("still here?")
            async for message in stream.messages():
                body = message.WhichOneof("body")
                assert body != "error", message
                if body == "ack" and message.ack.client_event_id == sent:
                    break
        await alice.end_session(theirs)


async def _attach(client: EarpieceClient, session_id: str) -> None:
    async with client.attach(session_id):
        pass


BRIEFING_ = (
    "You are a calm voice assistant for one user at a time. Speak in short sentences and say "
    "one thing at a time, plainly. When the user asks for steps, give them one at a time and "
    "wait for the user to say they are done before the next step. Say what you will do before "
    "you do it."
)
