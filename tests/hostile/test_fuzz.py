"""Property-based fuzzing of the public API (hypothesis), bounded to about a minute: whatever
the request, no call answers UNKNOWN or INTERNAL, and no Connect stream dies silently (after
every batch of fuzzed messages a canary message on the same stream is still acknowledged).

`make fuzz` runs the same strategies at volume (tests/hostile/fuzz_api.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.earpiece.v1 import replay_pb2, replay_pb2_grpc, session_pb2, session_pb2_grpc
from tests.hostile.helpers import RawStream, screen, start
from tests.hostile.strategies import client_messages, messages, start_requests

BAD = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
BAD_CODES = {c.value[0] for c in BAD}


def fuzz(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


async def call(rpc: Any, request: Any, *, streaming: bool) -> grpc.StatusCode:
    try:
        if streaming:
            async for _ in rpc(request, timeout=20):
                pass
        else:
            await rpc(request, timeout=20)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() not in BAD, f"{exc.code()}: {exc.details()} for {request!r:.300}"
        return exc.code()
    return grpc.StatusCode.OK


@fuzz(1000)
@given(request=start_requests())
async def test_start_session(
    sessions: session_pb2_grpc.SessionServiceAsyncStub, request: session_pb2.StartSessionRequest
) -> None:
    await call(sessions.StartSession, request, streaming=False)


@pytest.fixture(scope="module")
async def fuzz_session(sessions: session_pb2_grpc.SessionServiceAsyncStub) -> str:
    return await start(sessions)


@pytest.fixture(scope="module")
async def fuzz_stream(
    sessions: session_pb2_grpc.SessionServiceAsyncStub, fuzz_session: str
) -> AsyncIterator[RawStream]:
    stream = RawStream(sessions, fuzz_session)
    await stream.attached()
    yield stream
    await stream.close()


@fuzz(1000)
@given(batch=st.lists(client_messages(), min_size=1, max_size=6))
async def test_connect_messages(
    fuzz_stream: RawStream, batch: list[session_pb2.ClientMessage]
) -> None:
    first = len(fuzz_stream.replies)
    for message in batch:
        fuzz_stream.send(message)
    canary = screen('{"canary": true}', f"canary-{uuid.uuid4().hex}")
    fuzz_stream.send(canary)
    reply = await fuzz_stream.reply_to(canary.client_event_id, wait=20)
    assert reply.WhichOneof("body") == "ack", reply
    for r in fuzz_stream.replies[first:]:
        if r.WhichOneof("body") == "error":
            assert r.error.code not in BAD_CODES, r.error
            assert not r.error.fatal, r.error


REPLAY = replay_pb2.DESCRIPTOR.services_by_name["ReplayService"]
SESSION_READS = ["GetSession", "ListSessions", "EndSession"]


@fuzz(1500)
@given(data=st.data(), method=st.sampled_from(list(REPLAY.methods)))
async def test_replay_rpcs(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, fuzz_session: str, data: Any, method: Any
) -> None:
    request = data.draw(messages(method.input_type, known=[fuzz_session]))
    await call(getattr(replay, method.name), request, streaming=method.server_streaming)


@fuzz(300)
@given(data=st.data(), name=st.sampled_from(SESSION_READS))
async def test_other_session_rpcs(
    sessions: session_pb2_grpc.SessionServiceAsyncStub, data: Any, name: str
) -> None:
    method = session_pb2.DESCRIPTOR.services_by_name["SessionService"].methods_by_name[name]
    request = data.draw(messages(method.input_type))
    await call(getattr(sessions, name), request, streaming=False)
