"""The public gRPC API over a real loopback port, on embedded Postgres and the Temporal dev
server: a full round trip, idempotency, and every bad input getting its status while the session
goes on."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.api.earpiece.v1 import replay_pb2, session_pb2
from services.client import EarpieceClient
from services.gateway.server import RunningGateway

BRIEFING = (
    "You are Ada, a patient software tutor sitting next to the user. Respond conversationally, "
    "in 1-2 sentences, like you're sitting next to the user. When the user is confused, you slow "
    "down and explain one step at a time, then wait for them to confirm. When the user goes off "
    "topic, you answer briefly and steer back to the lesson. A user message that begins with "
    "'Context update:' is the current state of the user's screen, not a question: use it "
    "silently. Always finish your current sentence before you call a tool. You speak warmly "
    "and plainly, and you never make the user feel slow. When the user asks for steps, you give "
    "them numbered, one at a time, and wait for the user to say they are done before the next. "
    "When the user makes a mistake, you name what went wrong in one sentence and show the fix."
)
FRAME = b"\x01\x00" * 480  # 20 ms of 24 kHz PCM16


@pytest.fixture
async def client(gateway: RunningGateway):
    async with EarpieceClient.connect(gateway.address) as c:
        yield c


async def start(client: EarpieceClient, **kw) -> session_pb2.Session:
    response = await client.start_session(
        tenant_id=kw.pop("tenant_id", "acme"), instructions=kw.pop("instructions", BRIEFING), **kw
    )
    return response.session


async def expect_ack(stream, client_event_id: str) -> session_pb2.ServerMessage:
    async with asyncio.timeout(10):
        async for message in stream.messages():
            if message.WhichOneof("body") == "ack":
                assert message.ack.client_event_id == client_event_id
                return message
    raise AssertionError("stream ended before the ack")


async def next_of(stream, body: str) -> session_pb2.ServerMessage:
    async with asyncio.timeout(10):
        async for message in stream.messages():
            if message.WhichOneof("body") == body:
                return message
    raise AssertionError(f"stream ended before a {body}")


async def test_full_round_trip_records_every_event_in_order(client: EarpieceClient) -> None:
    session = await start(client)
    assert session.status == session_pb2.SESSION_STATUS_ACTIVE
    assert len(session.prompt_hash) == 64

    async with client.attach(session.session_id) as stream:
        assert stream.attached is not None
        assert stream.attached.session.session_id == session.session_id
        for _ in range(25):
            await stream.send_audio(FRAME)
        screen_id = await stream.send_screen_state({"screen": "settings", "step": 2})
        await expect_ack(stream, screen_id)
        text_id = await stream.send_text("where is the export button?")
        await expect_ack(stream, text_id)
        playback_id = await stream.report_playback("resp_1", played_ms=400, finished=True)
        await expect_ack(stream, playback_id)

        ended = await client.end_session(session.session_id, reason="lesson over")
        assert ended.status == session_pb2.SESSION_STATUS_ENDED
        assert ended.end_reason == "lesson over"
        state = await next_of(stream, "state")
        assert state.state.state == session_pb2.SessionState.STATE_ENDED

    events = [e async for e in client.read_events(session.session_id)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds == [
        "session.started",
        "client.attach",
        *["client.audio"] * 25,
        "client.screen_state",
        "client.text",
        "client.playback",
        "session.ended",
    ]
    audio = [json.loads(e.payload_json)["audio"] for e in events if e.kind == "client.audio"]
    assert [a["offset"] for a in audio] == [i * len(FRAME) for i in range(25)]
    assert json.loads(events[kinds.index("client.screen_state")].payload_json)["state"] == {
        "screen": "settings",
        "step": 2,
    }
    # ReadEvents from a seq, and with a limit.
    tail = [e async for e in client.read_events(session.session_id, after_seq=events[-3].seq)]
    assert [e.seq for e in tail] == [events[-2].seq, events[-1].seq]
    limited = [
        e
        async for page in client.replay.ReadEvents(
            replay_pb2.ReadEventsRequest(session_id=session.session_id, limit=3)
        )
        for e in page.events
    ]
    assert [e.seq for e in limited] == [1, 2, 3]


async def test_audio_in_the_log_is_byte_identical(client: EarpieceClient, store) -> None:
    session = await start(client)
    frames = [bytes([i]) * 960 for i in range(1, 60)]
    async with client.attach(session.session_id) as stream:
        await stream.stream_audio(frames, realtime=False)
        marker = await stream.send_text("done")
        await expect_ack(stream, marker)
        await client.end_session(session.session_id)
    assert await store.read_audio_bytes(session.session_id, stream="input") == b"".join(frames)


async def test_repeated_client_event_id_is_accepted_once(client: EarpieceClient) -> None:
    session = await start(client)
    async with client.attach(session.session_id) as stream:
        await stream.send_text("hello", client_event_id="evt-1")
        first = await expect_ack(stream, "evt-1")
        assert not first.ack.duplicate
        await stream.send_text("hello", client_event_id="evt-1")
        second = await expect_ack(stream, "evt-1")
        assert second.ack.duplicate
    # Dedup survives a re-attach: the writer reloads the ids already recorded.
    async with client.attach(session.session_id) as stream:
        await stream.send_text("hello", client_event_id="evt-1")
        assert (await expect_ack(stream, "evt-1")).ack.duplicate
    kinds = [k async for k in _kinds(client, session.session_id)]
    assert kinds.count("client.text") == 1
    await client.end_session(session.session_id)


async def _kinds(client: EarpieceClient, session_id: str):
    async for e in client.read_events(session_id):
        yield e.kind


async def test_idempotent_start_with_chosen_id(client: EarpieceClient) -> None:
    chosen = f"lesson-{uuid.uuid4().hex[:8]}"
    first = await start(client, session_id=chosen)
    again = await start(client, session_id=chosen)
    assert first.session_id == again.session_id == chosen
    assert first.created_at == again.created_at
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await start(client, session_id=chosen, tenant_id="someone-else")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    await client.end_session(chosen)


async def test_get_and_list_sessions_with_pages(client: EarpieceClient) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ids = [(await start(client, tenant_id=tenant)).session_id for _ in range(5)]
    await client.end_session(ids[0])
    got = await client.get_session(ids[0])
    assert got.status == session_pb2.SESSION_STATUS_ENDED
    seen: list[str] = []
    token = ""
    while True:
        page = await client.sessions.ListSessions(
            session_pb2.ListSessionsRequest(tenant_id=tenant, page_size=2, page_token=token)
        )
        assert len(page.sessions) <= 2
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    active = await client.sessions.ListSessions(
        session_pb2.ListSessionsRequest(tenant_id=tenant, status=session_pb2.SESSION_STATUS_ACTIVE)
    )
    assert sorted(s.session_id for s in active.sessions) == sorted(ids[1:])
    for session_id in ids[1:]:
        await client.end_session(session_id)


# ---- bad input ----


def field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        # (An empty tenant_id is the key's own tenant: tests/security.)
        (session_pb2.StartSessionRequest(tenant_id="bad tenant!"), "tenant_id"),
        (session_pb2.StartSessionRequest(tenant_id="acme"), "config"),
        (
            session_pb2.StartSessionRequest(tenant_id="acme", config=session_pb2.SessionConfig()),
            "config.prompt",
        ),
        (
            session_pb2.StartSessionRequest(
                tenant_id="acme",
                config=session_pb2.SessionConfig(instructions=BRIEFING, voice="robot"),
            ),
            "config.voice",
        ),
        (
            session_pb2.StartSessionRequest(
                tenant_id="acme",
                config=session_pb2.SessionConfig(instructions=BRIEFING, tools=["launch_rockets"]),
            ),
            "config.tools[0]",
        ),
        (
            session_pb2.StartSessionRequest(
                tenant_id="acme",
                session_id="no spaces allowed",
                config=session_pb2.SessionConfig(instructions=BRIEFING),
            ),
            "session_id",
        ),
    ],
)
async def test_start_session_rejects_bad_requests_naming_the_field(
    client: EarpieceClient, request_: session_pb2.StartSessionRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.sessions.StartSession(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (info.value.details() or "")
    assert field_violations(info.value) == [field]


async def test_connect_to_unknown_session_is_not_found(client: EarpieceClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with client.attach("no-such-session"):
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_connect_to_ended_session_is_failed_precondition(client: EarpieceClient) -> None:
    session = await start(client)
    await client.end_session(session.session_id)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with client.attach(session.session_id):
            pass
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_first_message_must_be_attach(client: EarpieceClient) -> None:
    call = client.sessions.Connect()  # type: ignore[call-arg]
    await call.write(
        session_pb2.ClientMessage(client_event_id="x", text=session_pb2.UserText(text="hi"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "attach" in (info.value.details() or "")


async def test_end_and_get_unknown_session_are_not_found(client: EarpieceClient) -> None:
    for call in (client.end_session("nope"), client.get_session("nope")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_messages_get_errors_and_the_session_goes_on(client: EarpieceClient) -> None:
    session = await start(client)
    bad = [
        ("odd", session_pb2.ClientMessage(audio=session_pb2.AudioFrame(pcm16=b"\x00" * 961))),
        ("big", session_pb2.ClientMessage(audio=session_pb2.AudioFrame(pcm16=b"\x00" * 40000))),
        (
            "huge-screen",
            session_pb2.ClientMessage(
                screen_state=session_pb2.ScreenState(json=json.dumps({"x": "y" * 20000}))
            ),
        ),
        ("not-json", session_pb2.ClientMessage(screen_state=session_pb2.ScreenState(json="{"))),
        ("empty", session_pb2.ClientMessage()),
    ]
    async with client.attach(session.session_id) as stream:
        await stream.send_audio(FRAME, client_event_id="good-1")
        for cid, message in bad:
            message.client_event_id = cid
            await stream.send(message)
            error = await next_of(stream, "error")
            assert error.error.client_event_id == cid
            assert error.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert not error.error.fatal
        # A message without a client event id is rejected too.
        await stream._call.write(session_pb2.ClientMessage(text=session_pb2.UserText(text="x")))
        assert "client_event_id" in (await next_of(stream, "error")).error.message
        # The stream goes on: a good message after the bad ones is accepted.
        await stream.send_audio(FRAME, client_event_id="good-2")
        await stream.send_text("still here", client_event_id="good-3")
        await expect_ack(stream, "good-3")
        # A corrected message may reuse a rejected message's id.
        await stream.send_audio(FRAME, client_event_id="odd")
        await stream.send_text("fixed", client_event_id="good-4")
        await expect_ack(stream, "good-4")
    events = [e async for e in client.read_events(session.session_id)]
    kinds = [e.kind for e in events]
    assert kinds.count("client.audio") == 3
    assert kinds.count("gateway.message_rejected") == len(bad) + 1
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    await client.end_session(session.session_id)


async def test_replay_of_unknown_session_is_not_found(client: EarpieceClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        [e async for e in client.read_events("nope")]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_idle_session_ends_by_itself(client: EarpieceClient) -> None:
    session = await start(client, idle_timeout=timedelta(seconds=10))
    async with client.attach(session.session_id) as stream:
        await stream.send_text("hi", client_event_id="one")
        await expect_ack(stream, "one")
    async with asyncio.timeout(30):
        while (await client.get_session(session.session_id)).status != (
            session_pb2.SESSION_STATUS_ENDED
        ):
            await asyncio.sleep(0.5)
    ended = await client.get_session(session.session_id)
    assert ended.end_reason == "idle_timeout"
    kinds = [k async for k in _kinds(client, session.session_id)]
    assert kinds[-2:] == ["client.detached", "session.ended"]
