"""Clients that play the assistant's audio the way real ones do, for the turn-seam tests.

A `Player` reads a session stream, "plays" each response's audio in real time from its first
frame, and reports playback (or not) in one of several manners:

- `reports`: progress every 200 ms, `finished` once everything received was played and the
  response's final transcript arrived;
- `never`: no reports at all (Earpiece must estimate);
- `stall`: like `reports`, but the speaker underruns for `stall_s` after `stall_after_ms`
  of audio, reporting all the while with progress stuck;
- `over`: reports more than it received, and `finished` as soon as the final transcript
  arrives (Earpiece must clamp, and never truncate past the audio generated).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Literal

from services.api.earpiece.v1 import session_pb2 as pb
from services.client import SessionStream

Mode = Literal["reports", "never", "stall", "over"]


@dataclass
class Playing:
    received_ms: float = 0.0
    started_at: float | None = None
    final_transcript: bool = False
    stopped_at_ms: float | None = None
    finished_reported_at: float | None = None
    stall_began: float | None = None

    def played_ms(self, now: float, *, stall_after_ms: float, stall_s: float, stall: bool) -> float:
        if self.started_at is None:
            return 0.0
        if self.stopped_at_ms is not None:
            return self.stopped_at_ms
        elapsed = (now - self.started_at) * 1000
        if stall and elapsed > stall_after_ms:
            # Progress stays at stall_after_ms for stall_s, then the speaker catches up.
            elapsed = max(stall_after_ms, elapsed - stall_s * 1000)
        return min(self.received_ms, elapsed)


@dataclass
class Player:
    stream: SessionStream
    mode: Mode = "reports"
    every_s: float = 0.2
    stall_after_ms: float = 1000.0
    stall_s: float = 3.0
    responses: dict[str, Playing] = field(default_factory=dict)
    messages: list[pb.ServerMessage] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> Player:
        self._tasks = [asyncio.create_task(self._read())]
        if self.mode != "never":
            self._tasks.append(asyncio.create_task(self._report()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait_for(self, predicate: object, *, timeout_s: float = 30.0) -> pb.ServerMessage:
        """The first message (seen already or later) for which `predicate(message)` is true."""
        assert callable(predicate)
        async with asyncio.timeout(timeout_s):
            i = 0
            while True:
                while i < len(self.messages):
                    if predicate(self.messages[i]):
                        return self.messages[i]
                    i += 1
                await asyncio.sleep(0.02)

    async def _read(self) -> None:
        async for m in self.stream.messages():
            self.messages.append(m)
            body = m.WhichOneof("body")
            if body == "audio":
                p = self.responses.setdefault(m.audio.response_id, Playing())
                p.received_ms += len(m.audio.pcm16) / 48
                if p.started_at is None:
                    p.started_at = time.monotonic()
            elif body == "transcript" and m.transcript.final and m.transcript.response_id:
                self.responses.setdefault(
                    m.transcript.response_id, Playing()
                ).final_transcript = True
            elif body == "stop_playback":
                stopped = self.responses.get(m.stop_playback.response_id)
                if stopped is not None and stopped.stopped_at_ms is None:
                    stopped.stopped_at_ms = self._played(stopped, time.monotonic())

    def _played(self, p: Playing, now: float) -> float:
        return p.played_ms(
            now,
            stall_after_ms=self.stall_after_ms,
            stall_s=self.stall_s,
            stall=self.mode == "stall",
        )

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            now = time.monotonic()
            for response_id, p in list(self.responses.items()):
                if p.started_at is None or p.finished_reported_at is not None:
                    continue
                played = self._played(p, now)
                if self.mode == "over":
                    finished = p.final_transcript
                    played += 2000
                else:
                    finished = p.stopped_at_ms is not None or (
                        p.final_transcript and played >= p.received_ms - 1
                    )
                if finished:
                    p.finished_reported_at = now
                await self.stream.report_playback(
                    response_id, played_ms=int(played), finished=finished
                )
