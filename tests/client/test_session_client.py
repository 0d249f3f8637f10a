"""The client library on real parts: a gateway over a loopback port whose sessions talk to the
simulator over a WebSocket, embedded Postgres and the Temporal dev server.

- Many tasks writing to one stream at once (gRPC allows one write in flight per call; two at
  once used to end the stream with GRPC_CALL_ERROR_TOO_MANY_OPERATIONS): every message must be
  acknowledged once and recorded once, and the stream must stay up.
- `batch_ms`: small microphone frames reach the log as fewer, larger `client.audio` events with
  exactly the same bytes, in order with the other messages.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from services.api.earpiece.v1 import session_pb2
from services.client import EarpieceClient, SessionStream
from services.store.event_store import EventStore
from services.store.events import StoredEvent
from tests.gateway.live_helpers import GatewayFor, simulator

BRIEFING = (
    "You are Ada, a patient software tutor sitting next to the user. Respond conversationally, "
    "in 1-2 sentences, like you're sitting next to the user. A user message that begins with "
    "'Context update:' is the current state of the user's screen, not a question: use it "
    "silently. Always finish your current sentence before you call a tool."
)
FRAME_10MS = 480  # bytes of 24 kHz PCM16


def quiet_frame(index: int, size: int) -> bytes:
    """A frame far below the simulator's voice detection, distinct from its neighbours."""
    return (index % 50 + 1).to_bytes(2, "little") * (size // 2)


def own_channel(address: str) -> grpc.aio.Channel:
    """A channel a backend might bring itself: the key as call credentials (sent over a local
    connection), no interceptors. gRPC's interceptor layer queues writes by itself; a plain
    call does not, so here the library's own serialisation is all there is."""
    key = os.environ["EARPIECE_API_KEY"]
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials(key)
    )
    return grpc.aio.secure_channel(address, credentials)


@pytest.fixture(params=["library channel", "own channel"])
async def client(
    gateway_for: GatewayFor, request: pytest.FixtureRequest
) -> AsyncIterator[EarpieceClient]:
    async with simulator("tutoring") as sim, gateway_for(sim.url) as gw:
        if request.param == "library channel":
            async with EarpieceClient.connect(gw.address) as c:
                yield c
        else:
            async with own_channel(gw.address) as channel:
                yield EarpieceClient(channel)


async def start(client: EarpieceClient) -> str:
    response = await client.start_session(tenant_id="acme", instructions=BRIEFING)
    return response.session.session_id


async def logged(store: EventStore, session_id: str) -> list[StoredEvent]:
    return [e async for e in store.read_events(session_id)]


async def test_concurrent_senders_are_each_recorded_once_and_the_stream_stays_up(
    client: EarpieceClient, store: EventStore
) -> None:
    session_id = await start(client)
    frames = [quiet_frame(i, 2 * FRAME_10MS) for i in range(400)]
    acks: Counter[str] = Counter()
    problems: list[session_pb2.ServerMessage] = []
    sent: dict[str, list[str]] = {"audio": [], "playback": [], "screen": []}

    async with client.attach(session_id) as stream:

        async def read() -> None:
            async for message in stream.messages():
                match message.WhichOneof("body"):
                    case "ack":
                        acks[message.ack.client_event_id] += 1
                        if message.ack.duplicate:
                            problems.append(message)
                    case "error":
                        problems.append(message)

        async def audio() -> None:
            for frame in frames:
                sent["audio"].append(await stream.send_audio(frame))

        async def playback(first: int) -> None:
            for i in range(first, first + 100):
                cid = await stream.report_playback(f"resp_{i}", played_ms=i, finished=False)
                sent["playback"].append(cid)

        async def screen(first: int) -> None:
            for i in range(first, first + 100):
                sent["screen"].append(await stream.send_screen_state({"step": i}))

        reader = asyncio.create_task(read())
        # Five writers at once: audio from one task, playback and screen state from two each.
        await asyncio.gather(audio(), playback(0), playback(100), screen(0), screen(100))
        acknowledged = sent["playback"] + sent["screen"]
        async with asyncio.timeout(30):  # a bound on a hang, not a measurement
            while not all(acks[cid] for cid in acknowledged):
                await asyncio.sleep(0.05)

        # Still up: the stream takes another message and answers it.
        last = await stream.send_text("still there?")
        async with asyncio.timeout(30):
            while not acks[last]:
                await asyncio.sleep(0.05)
        await stream.done_writing()
        await reader  # the server records everything, then ends the stream

    assert problems == []
    assert len(acknowledged) == 400
    assert {cid: acks[cid] for cid in acknowledged} == dict.fromkeys(acknowledged, 1)
    await client.end_session(session_id)

    events = await logged(store, session_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    recorded = {
        kind: Counter(e.client_event_id for e in events if e.kind == kind)
        for kind in ("client.audio", "client.playback", "client.screen_state")
    }
    assert recorded["client.audio"] == Counter(sent["audio"])
    assert recorded["client.playback"] == Counter(sent["playback"])
    assert recorded["client.screen_state"] == Counter(sent["screen"])
    assert len(sent["audio"]) == len(set(sent["audio"])) == 400
    assert await store.read_audio_bytes(session_id, stream="input") == b"".join(frames)


async def test_batch_ms_joins_small_frames_and_keeps_every_byte_in_order(
    client: EarpieceClient, store: EventStore
) -> None:
    session_id = await start(client)
    batch = 100 * FRAME_10MS // 10  # bytes in 100 ms
    before = [quiet_frame(i, FRAME_10MS) for i in range(95)]  # 950 ms in 10 ms frames
    after = [quiet_frame(i, FRAME_10MS) for i in range(95, 120)]
    async with client.attach(session_id, batch_ms=100) as stream:
        with pytest.raises(ValueError):
            await stream.send_audio(before[0], client_event_id="mine")
        ids = [await stream.send_audio(frame) for frame in before]
        # A non-audio message sends the batch's remainder first, so the log keeps the order.
        text_id = await stream.send_text("where is the export button?")
        # The rest through stream_audio, whose end flushes the remainder.
        await stream.stream_audio(after, realtime=False)
        assert not stream._batch

    await client.end_session(session_id)
    events = await logged(store, session_id)
    audio = [e for e in events if e.kind == "client.audio"]
    assert await store.read_audio_bytes(session_id, stream="input") == b"".join(before + after)
    # Fewer, larger events: each a whole number of 10 ms frames, at most 100 ms.
    assert len(audio) < (len(before) + len(after)) / 2
    assert all(e.audio and e.audio.length % FRAME_10MS == 0 for e in audio)
    assert all(e.audio and e.audio.length <= batch for e in audio)
    # One client event id per message; those before the text are the ones send_audio returned.
    assert len({e.client_event_id for e in audio}) == len(audio)
    text_seq = next(e.seq for e in events if e.client_event_id == text_id)
    assert {e.client_event_id for e in audio if e.seq < text_seq} == set(ids)
    # The text sits after exactly the audio sent before it.
    sizes_before = sum(e.audio.length for e in audio if e.audio and e.seq < text_seq)
    assert sizes_before == len(b"".join(before))


async def test_a_batch_the_microphone_stops_filling_is_sent_by_itself(
    client: EarpieceClient, store: EventStore
) -> None:
    session_id = await start(client)
    frames = [quiet_frame(i, FRAME_10MS) for i in range(3)]
    async with client.attach(session_id, batch_ms=100) as stream:
        for frame in frames:
            await stream.send_audio(frame)
        # Nothing else is sent: the batch goes when its time is up, with no close to push it.
        async with asyncio.timeout(30):  # a bound on a hang, not a measurement
            while not [e for e in await logged(store, session_id) if e.kind == "client.audio"]:
                await asyncio.sleep(0.05)
    audio = [e for e in await logged(store, session_id) if e.kind == "client.audio"]
    assert [e.audio.length for e in audio if e.audio] == [3 * FRAME_10MS]
    assert await store.read_audio_bytes(session_id, stream="input") == b"".join(frames)
    await client.end_session(session_id)


def test_a_batch_the_gateway_would_refuse_is_refused_here() -> None:
    with pytest.raises(ValueError):
        SessionStream.batch_bytes(batch_ms=1000)
    assert SessionStream.batch_bytes(batch_ms=20) == 960
