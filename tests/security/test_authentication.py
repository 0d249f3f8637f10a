"""Every RPC needs a valid key; health checking and reflection do not."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.api.earpiece.v1 import replay_pb2, session_pb2
from services.auth import CACHE_SECONDS, Role
from services.auth.keys import revoke_key
from services.client import EarpieceClient
from services.gateway.server import RunningGateway
from tests.conftest import MakeKey
from tests.security.conftest import ClientAs, Keys, start


async def every_rpc(client: EarpieceClient) -> dict[str, grpc.aio.AioRpcError]:
    """Each RPC once, with a plausible request; the error each answered (all must fail)."""
    session_id = f"nobody-{uuid.uuid4().hex[:8]}"
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "StartSession": lambda: client.start_session(tenant_id="x", instructions="x" * 80),
        "GetSession": lambda: client.get_session(session_id),
        "EndSession": lambda: client.end_session(session_id),
        "ListSessions": lambda: client.sessions.ListSessions(session_pb2.ListSessionsRequest()),
        "ReadEvents": lambda: _drain(
            client.replay.ReadEvents(replay_pb2.ReadEventsRequest(session_id=session_id))
        ),
        "Connect": lambda: _attach(client, session_id),
    }
    errors: dict[str, grpc.aio.AioRpcError] = {}
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call()
        errors[name] = info.value
    return errors


async def _drain(call: object) -> None:
    async for _ in call:  # type: ignore[attr-defined]
        pass


async def _attach(client: EarpieceClient, session_id: str) -> None:
    async with client.attach(session_id):
        pass


async def test_no_key_is_unauthenticated_everywhere_with_a_way_out(client_as: ClientAs) -> None:
    async with client_as(None) as client:
        errors = await every_rpc(client)
    for name, error in errors.items():
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert "authorization: Bearer" in (error.details() or ""), name
        assert "earpiece keys create" in (error.details() or ""), name


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("not-a-key", "malformed"),
        ("ep_0123456789abcdef_" + "A" * 43, "unknown API key ep_0123456789abcdef"),
    ],
)
async def test_malformed_and_unknown_keys_are_unauthenticated(
    client_as: ClientAs, key: str, says: str
) -> None:
    async with client_as(key) as client:
        errors = await every_rpc(client)
    for name, error in errors.items():
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert says in (error.details() or ""), name
        assert "A" * 43 not in (error.details() or ""), "the secret is never echoed"


async def get_refused(client_as: ClientAs, key: str) -> str:
    """GetSession with `key` must be UNAUTHENTICATED; the message."""
    async with client_as(key) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.get_session("whatever")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return info.value.details() or ""


async def test_a_right_id_with_a_wrong_secret_is_unknown(client_as: ClientAs, keys: Keys) -> None:
    key_id, secret = keys.a.client[:19], keys.a.client[20:]  # ep_<16 hex>_<secret>
    forged = f"{key_id}_{'B' if secret[0] != 'B' else 'C'}{secret[1:]}"
    assert "unknown API key" in await get_refused(client_as, forged)


async def test_the_scheme_must_be_bearer(gateway: RunningGateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        call = channel.unary_unary(
            "/earpiece.v1.SessionService/GetSession",
            request_serializer=session_pb2.GetSessionRequest.SerializeToString,
            response_deserializer=session_pb2.Session.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(
                session_pb2.GetSessionRequest(session_id="x"),
                metadata=(("authorization", "Basic dXNlcjpwYXNz"),),
            )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer <key>" in (info.value.details() or "")


async def test_a_revoked_key_is_refused_within_the_cache_time(
    client_as: ClientAs, api_key: MakeKey, pg_url: str
) -> None:
    key = await api_key(f"rev-{uuid.uuid4().hex[:8]}", Role.CLIENT)
    async with client_as(key) as client:
        session_id = await start(client)  # works, and is now cached
        owner = await asyncpg.connect(pg_url)
        try:
            await revoke_key(owner, key)
        finally:
            await owner.close()
        revoked_at = time.monotonic()
        while True:
            try:
                await client.get_session(session_id)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "was revoked" in (exc.details() or "")
                break
            assert time.monotonic() - revoked_at < CACHE_SECONDS + 2, "still accepted"
            await asyncio.sleep(0.2)


async def test_a_key_revoked_before_use_is_refused_at_once(
    client_as: ClientAs, api_key: MakeKey, pg_url: str
) -> None:
    key = await api_key(f"rev-{uuid.uuid4().hex[:8]}", Role.ANALYST)
    owner = await asyncpg.connect(pg_url)
    try:
        info = await revoke_key(owner, key[:19])  # by its id, as `keys list` shows it
    finally:
        await owner.close()
    assert info.revoked_at is not None
    assert "revoked" in await get_refused(client_as, key)


async def test_health_and_reflection_need_no_key(gateway: RunningGateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = [
            reply
            async for reply in stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        ]
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"earpiece.v1.SessionService", "earpiece.v1.ReplayService"} <= names
