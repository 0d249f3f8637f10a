"""The load benchmark's client pool: N sessions in one asyncio loop, with the client library.

Each session streams its microphone at real time, a 20 ms frame every 20 ms for the whole run:
speech bursts ("Is this right?", about a second) with a few seconds of silence between, at a
phase of its own; a frame's id is stamped into its first samples (frames.py) and its send time
(`time.monotonic()`, system-wide on Linux) is recorded. Every assistant audio message's arrival
is recorded by response id, playback is reported every 500 ms of audio received and finished on
the final assistant transcript. The last seconds are silence only, so answers finish, then each
stream is closed (the gateway records everything and ends it) and the session ended.

Prints `attached` once every session is attached (sending starts at a common instant just
after), `sending done` when the paced part ends; writes what it recorded as JSON to --out.

python -m benchmarks.load.clients --address HOST:PORT --sessions N --seconds S --out FILE [--light]

`--light`: the same sessions and measurements without the client library (light_clients.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from benchmarks.load.frames import frame_id, stamp
from services.client import EarpieceClient
from services.client.session_client import SessionStream
from services.realtime.simulator.voice import silence, synthesize_speech

FRAME_BYTES = 960  # 20 ms of 24 kHz PCM16
FRAME_S = 0.020
TAIL_S = 4.0  # silence at the end, so the last answers finish
SESSIONS_PER_CHANNEL = 10
INSTRUCTIONS = (
    "You are a benchmark tutor. Respond conversationally, in 1-2 sentences, like you're sitting "
    "next to the user. When the user speaks, you answer briefly."
)


def frames_of(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


SPEECH = frames_of(synthesize_speech("Is this right?"))
QUIET = frames_of(silence(20))[0]


def mic_schedule(index: int, total_frames: int) -> list[bytes]:
    """Frames for the whole run: a burst of speech, then 4 to 6 s of silence, from a random
    phase; silence only for the tail."""
    rng = random.Random(index)
    out: list[bytes] = [QUIET] * rng.randrange(1, 250)
    tail = int(TAIL_S / FRAME_S)
    while len(out) < total_frames - tail:
        out.extend(SPEECH)
        out.extend([QUIET] * rng.randrange(200, 300))
    out = out[: max(0, total_frames - tail)]
    return out + [QUIET] * (total_frames - len(out))


class Session:
    def __init__(self, index: int) -> None:
        self.index = index
        self.session_id = ""
        self.sent: list[float] = []  # send time by frame seq
        self.lag: list[float] = []  # how late each send was against its schedule, s
        self.received: dict[str, list[float]] = {}
        self.last_receive = 0.0
        self.errors: list[str] = []
        self.closing = False  # no more writes once the stream is half-closed

    async def receive(self, stream: SessionStream) -> None:
        played: dict[str, int] = {}
        async for m in stream.messages():
            body = m.WhichOneof("body")
            now = time.monotonic()
            self.last_receive = now
            if body == "audio":
                self.received.setdefault(m.audio.response_id, []).append(now)
                rid = m.audio.response_id
                before = played.get(rid, 0)
                played[rid] = after = before + len(m.audio.pcm16) // 48
                if after // 500 > before // 500 and not self.closing:
                    await stream.report_playback(rid, played_ms=after, finished=False)
            elif body == "transcript" and m.transcript.final and m.transcript.role == 2:
                rid = m.transcript.response_id
                if self.closing:
                    continue
                await stream.report_playback(rid, played_ms=played.get(rid, 0), finished=True)

    async def send(self, stream: SessionStream, frames: list[bytes], start: float) -> None:
        loop = asyncio.get_running_loop()
        for seq, frame in enumerate(frames):
            due = start + seq * FRAME_S
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lag.append(loop.time() - due)
            self.sent.append(time.monotonic())
            await stream.send_audio(stamp(frame, frame_id(self.index, seq)))

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "session_id": self.session_id,
            "sent": self.sent,
            "received": self.received,
            "last_receive": self.last_receive,
            "errors": self.errors,
        }


class Countdown:
    """Set once every session has arrived (attached, or failed trying); arriving twice counts
    once."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.seen: set[int] = set()
        self.done = asyncio.Event()

    def arrive(self, key: int | None = None) -> None:
        task = asyncio.current_task()
        ident = key if key is not None else id(task)
        if ident not in self.seen:
            self.seen.add(ident)
            self.left -= 1
            if self.left <= 0:
                self.done.set()

    async def wait(self) -> None:
        await self.done.wait()


async def run_session(
    api: EarpieceClient,
    session: Session,
    frames: list[bytes],
    attached: Countdown,
    go: asyncio.Future[float],
) -> None:
    try:
        started = await api.start_session(tenant_id="bench", instructions=INSTRUCTIONS)
        session.session_id = started.session.session_id
        async with api.attach(session.session_id) as stream:
            receiver = asyncio.create_task(session.receive(stream))
            attached.arrive()
            start = await go
            # Each session's frames tick at its own offset inside the 20 ms period.
            await session.send(stream, frames, start + (session.index % 20) * 0.001)
            session.closing = True
            async with stream._write_lock:  # a playback report may be on its way
                await stream.done_writing()  # the gateway records everything, then ends the stream
            await asyncio.wait_for(receiver, timeout=20)
        await api.end_session(session.session_id)
    except Exception as exc:  # recorded, the others go on
        session.errors.append(repr(exc))
    finally:
        attached.arrive()  # a session that failed before attaching does not hold the others


async def pace_pool(
    pool: Sequence[Session],
    run_one: Callable[[Session], Coroutine[Any, Any, None]],
    *,
    attached: Countdown,
    go: asyncio.Future[float],
    seconds: float,
) -> dict[str, Any]:
    """Starts every session over a short ramp, sends them off together once all are attached,
    waits out the paced part and the endings, and reports (both harnesses' common part)."""
    tasks = []
    for s in pool:
        tasks.append(asyncio.create_task(run_one(s)))
        await asyncio.sleep(0.02)  # sessions start over a short ramp, not all at once
    async with asyncio.timeout(60):
        await attached.wait()
    print("attached", flush=True)
    go.set_result(asyncio.get_running_loop().time() + 0.5)
    await asyncio.sleep(0.5 + seconds)
    print("sending done", flush=True)
    await asyncio.wait(tasks, timeout=60)
    lags = sorted(x for s in pool for x in s.lag)
    return {
        "sessions": [s.report() for s in pool],
        "send_lag_p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
    }


async def run(address: str, sessions: int, seconds: float) -> dict[str, Any]:
    total_frames = int(seconds / FRAME_S)
    pool = [Session(i) for i in range(sessions)]
    attached = Countdown(sessions)
    go: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    channels = [
        EarpieceClient.connect(address)
        for _ in range((sessions + SESSIONS_PER_CHANNEL - 1) // SESSIONS_PER_CHANNEL)
    ]
    apis = [await c.__aenter__() for c in channels]

    async def run_one(s: Session) -> None:
        api = apis[s.index // SESSIONS_PER_CHANNEL]
        await run_session(api, s, mic_schedule(s.index, total_frames), attached, go)

    try:
        return await pace_pool(pool, run_one, attached=attached, go=go, seconds=seconds)
    finally:
        for c in channels:
            await c.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.load.clients")
    parser.add_argument("--address", required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--light", action="store_true", help="without the client library")
    a = parser.parse_args()
    if a.light:
        from benchmarks.load import light_clients  # it imports this module

        result = asyncio.run(light_clients.run(a.address, a.sessions, a.seconds))
    else:
        result = asyncio.run(run(a.address, a.sessions, a.seconds))
    a.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
