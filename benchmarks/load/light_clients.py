"""The light client pool (`make bench-load ARGS=--light`): the same sessions, talk pattern and
measurements as clients.py, without the client library, so that on a small machine the pool
leaves the cores to the gateway under test.

What is saved, per 20 ms frame and session: the client library's protobuf building (a uuid4
event id, a datetime → Timestamp conversion, a ClientMessage) and its write lock, and the bearer
interceptors, which route every write of a stream through a queue and a second task. Here each
`Connect` is a plain gRPC stream (no interceptor; the API key rides in the call's metadata) whose
request serializer is the identity: an audio message is assembled as bytes from a fixed header,
the frame's id, its send time and its pre-cut PCM (what protobuf would encode; checked once at
start-up). The gateway receives exactly what the client library would send: a unique
32-character client event id, `sent_at`, 960 bytes of audio. Playback reports are built with
protobuf (two a second) and written by the sending task right after its next frame, instead of
through a lock shared with the receiving task: up to 20 ms later than the library would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc

from benchmarks.load.clients import (
    FRAME_S,
    INSTRUCTIONS,
    QUIET,
    SESSIONS_PER_CHANNEL,
    SPEECH,
    Countdown,
    Session,
    mic_schedule,
    pace_pool,
)
from benchmarks.load.frames import ID_SAMPLES, frame_id, id_head
from services.api.earpiece.v1 import session_pb2 as pb
from services.api.earpiece.v1 import session_pb2_grpc
from services.client.session_client import default_api_key

CONNECT = "/earpiece.v1.SessionService/Connect"
ASSISTANT = pb.Transcript.ROLE_ASSISTANT


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def timestamp_field(ns: int) -> bytes:
    """ClientMessage.sent_at (field 2) for a Unix time in nanoseconds."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    body = b"\x08" + varint(seconds) + (b"\x10" + varint(nanos) if nanos else b"")
    return b"\x12" + varint(len(body)) + body


def audio_message(fid: int, ns: int, tail: bytes) -> bytes:
    """A serialized ClientMessage: client_event_id (field 1, the frame id as 32 hex digits),
    sent_at (2), audio (11) whose pcm16 is the 16 id samples then `tail`."""
    pcm_len = 2 * ID_SAMPLES + len(tail)
    audio = b"\x0a" + varint(pcm_len)
    return b"".join(
        (
            b"\x0a\x20",
            f"{fid:032x}".encode(),
            timestamp_field(ns),
            b"\x5a",
            varint(len(audio) + pcm_len),
            audio,
            id_head(fid),
            tail,
        )
    )


def check_encoding() -> None:
    """The hand-built bytes parse to the message the client library would build."""
    tail = bytes(range(256)) * 4
    tail = tail[: 960 - 2 * ID_SAMPLES]
    fid, ns = frame_id(7, 123_456), time.time_ns()
    parsed = pb.ClientMessage.FromString(audio_message(fid, ns, tail))
    assert parsed.client_event_id == f"{fid:032x}"
    assert parsed.sent_at.ToNanoseconds() == ns
    assert parsed.WhichOneof("body") == "audio"
    assert parsed.audio.pcm16 == id_head(fid) + tail


def playback(response_id: str, played_ms: int, *, finished: bool) -> bytes:
    message = pb.ClientMessage(
        client_event_id=uuid.uuid4().hex,
        playback=pb.PlaybackReport(response_id=response_id, played_ms=played_ms, finished=finished),
    )
    message.sent_at.FromNanoseconds(time.time_ns())
    return message.SerializeToString()


class LightSession(Session):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.reports: list[bytes] = []  # playback reports for the sender to write

    async def receive_light(self, call: Any) -> None:
        played: dict[str, int] = {}
        while (m := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            now = time.monotonic()
            self.last_receive = now
            body = m.WhichOneof("body")
            if body == "audio":
                rid = m.audio.response_id
                self.received.setdefault(rid, []).append(now)
                before = played.get(rid, 0)
                played[rid] = after = before + len(m.audio.pcm16) // 48
                if after // 500 > before // 500 and not self.closing:
                    self.reports.append(playback(rid, after, finished=False))
            elif body == "transcript" and m.transcript.final and m.transcript.role == ASSISTANT:
                rid = m.transcript.response_id
                if not self.closing:
                    self.reports.append(playback(rid, played.get(rid, 0), finished=True))

    async def send_light(self, call: Any, frames: list[bytes], start: float) -> None:
        loop = asyncio.get_running_loop()
        monotonic, time_ns, write = time.monotonic, time.time_ns, call.write
        sent, lag, reports = self.sent, self.lag, self.reports
        base = frame_id(self.index, 0)
        for seq, tail in enumerate(frames):
            due = start + seq * FRAME_S
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag.append(loop.time() - due)
            sent.append(monotonic())
            await write(audio_message(base | seq, time_ns(), tail))
            while reports:
                await write(reports.pop(0))


async def run_session(
    channel: grpc.aio.Channel,
    metadata: tuple[tuple[str, str], ...],
    session: LightSession,
    frames: list[bytes],
    attached: Countdown,
    go: asyncio.Future[float],
) -> None:
    stub = session_pb2_grpc.SessionServiceStub(channel)
    connect = channel.stream_stream(
        CONNECT, request_serializer=None, response_deserializer=pb.ServerMessage.FromString
    )
    try:
        started = await stub.StartSession(
            pb.StartSessionRequest(
                tenant_id="bench", config=pb.SessionConfig(instructions=INSTRUCTIONS)
            ),
            metadata=metadata,
        )
        session.session_id = started.session.session_id
        call = connect(metadata=metadata)  # type: ignore[call-arg]  # the stubs predate aio
        try:
            attach = pb.ClientMessage(
                client_event_id=uuid.uuid4().hex,
                attach=pb.Attach(session_id=session.session_id),
            )
            attach.sent_at.FromNanoseconds(time.time_ns())
            await call.write(attach.SerializeToString())
            first = await call.read()
            if first is grpc.aio.EOF:  # type: ignore[attr-defined]
                await call  # type: ignore[misc]  # raises the server's status
                raise ConnectionError("the server closed the stream before attaching")
            receiver = asyncio.create_task(session.receive_light(call))
            attached.arrive()
            start = await go
            # Each session's frames tick at its own offset inside the 20 ms period.
            await session.send_light(call, frames, start + (session.index % 20) * 0.001)
            session.closing = True
            await call.done_writing()  # the gateway records everything, then ends the stream
            await asyncio.wait_for(receiver, timeout=20)
        finally:
            call.cancel()
        ended = pb.EndSessionRequest(session_id=session.session_id)
        await stub.EndSession(ended, metadata=metadata)
    except Exception as exc:  # recorded, the others go on
        session.errors.append(repr(exc))
    finally:
        attached.arrive()  # a session that failed before attaching does not hold the others


async def run(address: str, sessions: int, seconds: float) -> dict[str, Any]:
    check_encoding()
    total_frames = int(seconds / FRAME_S)
    pool = [LightSession(i) for i in range(sessions)]
    attached = Countdown(sessions)
    go: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    metadata = (("authorization", f"Bearer {default_api_key() or ''}"),)
    channels = [
        grpc.aio.insecure_channel(address)
        for _ in range((sessions + SESSIONS_PER_CHANNEL - 1) // SESSIONS_PER_CHANNEL)
    ]
    # The id samples are stamped per send; the rest of each distinct frame is cut once.
    cut = {id(f): f[2 * ID_SAMPLES :] for f in [*SPEECH, QUIET]}

    async def run_one(s: Session) -> None:
        assert isinstance(s, LightSession)
        tails = [cut[id(f)] for f in mic_schedule(s.index, total_frames)]
        channel = channels[s.index // SESSIONS_PER_CHANNEL]
        await run_session(channel, metadata, s, tails, attached, go)

    try:
        return await pace_pool(pool, run_one, attached=attached, go=go, seconds=seconds)
    finally:
        for c in channels:
            await c.close(None)
