"""Stereo WAV of a session on the wall clock: the user's microphone on the left, what the
assistant's audio the client played on the right, silences kept.

Pure: an `AudioPlan` is built from the events (where each recorded frame goes on the wall
clock), then rendered against the stored stream bytes and which byte ranges are actually
stored. Audio an event refers to but that is not stored (lost in a crash, or purged by
retention) is silence in the samples and a `Marker` beside them, never skipped over, so the
wall clock stays true.

Placement:
- user frames go at their receive time, but back to back while they arrive faster than real
  time or with jitter under `JITTER_MS`, so a burst or a late frame does not cut the audio;
- assistant frames play from their response's first frame (when the client started playing
  it), back to back, and stop where the user barged in (`audio_end_ms` of the truncation).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.replay.analysis import BYTES_PER_MS, Analysis
from services.store.events import StoredEvent

_MS = timedelta(milliseconds=1)
SAMPLE_RATE = 24_000
JITTER_MS = 120
_OUTPUT_DELTA = "model.server.response.output_audio.delta"


@dataclass(frozen=True)
class Marker:
    """A stretch of one channel with no stored audio behind it."""

    channel: str  # "user" or "assistant"
    start_ms: int
    end_ms: int
    reason: str  # "missing" (never stored) or "purged" (removed by retention)


@dataclass
class Placement:
    src: int  # byte offset in the stream
    length: int  # bytes
    dst: int  # byte offset in the mono track (48 bytes per ms)


@dataclass
class AudioPlan:
    user: list[Placement] = field(default_factory=list)
    assistant: list[Placement] = field(default_factory=list)
    duration_ms: int = 0

    @property
    def track_bytes(self) -> int:
        end = self.duration_ms * BYTES_PER_MS
        for track in (self.user, self.assistant):
            if track:
                end = max(end, track[-1].dst + track[-1].length)
        return end + (end & 1)


class AudioPlanner:
    """Collects the audio events of one session (feed them in seq order with the rest)."""

    def __init__(self) -> None:
        self._start: datetime | None = None
        self._input: list[tuple[int, int, int]] = []  # (offset, length, received ms)
        # Output frames in order, grouped per response by the index where each response began.
        self._output: list[tuple[int, int]] = []
        self._response_starts: list[tuple[int, str]] = []  # (index into _output, response id)
        self._active = ""
        self._last_ms = 0

    def feed(self, event: StoredEvent) -> None:
        ref = event.audio
        if ref is None:
            self.feed_row(event.kind, event.receive_time, None, 0, 0, event.payload_json)
        else:
            self.feed_row(event.kind, event.receive_time, ref.stream, ref.offset, ref.length, "")

    def feed_row(
        self,
        kind: str,
        receive_time: datetime,
        stream: str | None,
        offset: int,
        length: int,
        payload_json: str,
    ) -> None:
        """`feed` on a row's columns (the payload is read only for response.created)."""
        if self._start is None:
            self._start = receive_time
        at = (receive_time - self._start) // _MS
        self._last_ms = at
        if stream is not None:
            if stream == "input":
                self._input.append((offset, length, at))
            elif kind == _OUTPUT_DELTA:
                self._output.append((offset, length))
                if not self._response_starts or self._response_starts[-1][1] != self._active:
                    self._response_starts.append((len(self._output) - 1, self._active))
            return
        if kind == "model.server.response.created":
            response = json.loads(payload_json).get("response") or {}
            self._active = str(response.get("id", ""))

    def plan(self, analysis: Analysis) -> AudioPlan:
        plan = AudioPlan(duration_ms=max(analysis.duration_ms, self._last_ms))
        cursor = -(10**12)  # nothing placed yet: the first frame goes where it arrived
        jitter = JITTER_MS * BYTES_PER_MS
        for offset, length, at in self._input:
            wanted = max(0, (at - length // BYTES_PER_MS) * BYTES_PER_MS)
            dst = cursor if wanted - cursor < jitter else wanted
            plan.user.append(Placement(offset, length, dst))
            cursor = dst + length
        cursor = 0
        starts = self._response_starts
        bounds = [i for i, _ in starts[1:]] + [len(self._output)] if starts else []
        for (begin, response_id), end in zip(self._response_starts, bounds, strict=True):
            response = analysis.responses.get(response_id)
            if response is None or response.first_audio_ms is None:
                continue
            budget = response.played_ms * BYTES_PER_MS
            dst = max(cursor, response.first_audio_ms * BYTES_PER_MS)
            for offset, length in self._output[begin:end]:
                if budget <= 0:
                    break
                take = min(length, budget) & ~1
                plan.assistant.append(Placement(offset, take, dst))
                dst += take
                budget -= take
            cursor = dst
        return plan


@dataclass
class StoredStream:
    """One stream's stored bytes (byte i = stream offset i, zero where nothing is stored) and
    the ranges that are really stored, or were purged."""

    data: bytes
    stored: list[tuple[int, int]]  # [start, end) byte ranges present, sorted
    purged: list[tuple[int, int]] = field(default_factory=list)

    def missing(self, start: int, end: int) -> list[tuple[int, int, str]]:
        """Sub-ranges of [start, end) not stored, each with why."""
        out: list[tuple[int, int, str]] = []
        position = start
        for s, e in self.stored:
            if e <= position:
                continue
            if s >= end:
                break
            if s > position:
                out.append((position, s, self._why(position)))
            position = max(position, e)
            if position >= end:
                break
        if position < end:
            out.append((position, end, self._why(position)))
        return out

    def _why(self, offset: int) -> str:
        return "purged" if any(s <= offset < e for s, e in self.purged) else "missing"


def _render_track(
    placements: list[Placement], stream: StoredStream, size: int, channel: str
) -> tuple[bytearray, list[Marker]]:
    track = bytearray(size)
    markers: list[Marker] = []
    data = stream.data
    stored = stream.stored
    index = 0
    for p in placements:
        src_end = p.src + p.length
        # Fast path: the frame lies inside one stored range (the stored list is sorted and
        # frames come in stream order, so the index only moves forward).
        while index < len(stored) and stored[index][1] <= p.src:
            index += 1
        if index < len(stored) and stored[index][0] <= p.src and src_end <= stored[index][1]:
            track[p.dst : p.dst + p.length] = data[p.src : src_end]
            continue
        holes = stream.missing(p.src, src_end)
        track[p.dst : p.dst + p.length] = data[p.src : src_end].ljust(p.length, b"\0")
        for s, e, why in holes:
            start_ms = (p.dst + s - p.src) // BYTES_PER_MS
            end_ms = (p.dst + e - p.src) // BYTES_PER_MS
            if markers and markers[-1].reason == why and start_ms - markers[-1].end_ms <= 1:
                last = markers.pop()
                markers.append(Marker(channel, last.start_ms, end_ms, why))
            else:
                markers.append(Marker(channel, start_ms, end_ms, why))
    return track, markers


def interleave(left: bytes | bytearray, right: bytes | bytearray) -> bytearray:
    """Two mono PCM16 tracks of the same length → one stereo PCM16 stream."""
    out = bytearray(len(left) * 2)
    out[0::4] = left[0::2]
    out[1::4] = left[1::2]
    out[2::4] = right[0::2]
    out[3::4] = right[1::2]
    return out


def _cue_chunks(markers: list[Marker]) -> bytes:
    """RIFF `cue ` points and `LIST adtl` labels (with lengths), so a WAV editor shows the
    holes; sample positions are per channel frame."""
    if not markers:
        return b""
    cues = b"".join(
        struct.pack("<II4sIII", i + 1, m.start_ms * 24, b"data", 0, 0, m.start_ms * 24)
        for i, m in enumerate(markers)
    )
    cue = b"cue " + struct.pack("<II", 4 + len(cues), len(markers)) + cues
    items = b""
    for i, m in enumerate(markers):
        text = f"{m.channel} audio {m.reason} ({m.end_ms - m.start_ms} ms)".encode() + b"\0"
        if len(text) & 1:
            text += b"\0"
        items += b"labl" + struct.pack("<II", 4 + len(text), i + 1) + text
        ltxt = struct.pack("<II4sHHHH", i + 1, (m.end_ms - m.start_ms) * 24, b"rgn ", 0, 0, 0, 0)
        items += b"ltxt" + struct.pack("<I", len(ltxt)) + ltxt
    return cue + b"LIST" + struct.pack("<I", 4 + len(items)) + b"adtl" + items


def wav_header(data_bytes: int, trailer_bytes: int = 0, channels: int = 2) -> bytes:
    byte_rate = SAMPLE_RATE * 2 * channels
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes + trailer_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, SAMPLE_RATE, byte_rate, 2 * channels, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


@dataclass
class RenderedAudio:
    duration_ms: int
    markers: list[Marker]
    left: bytearray
    right: bytearray

    @property
    def trailer(self) -> bytes:
        return _cue_chunks(self.markers)

    @property
    def wav_size(self) -> int:
        return len(wav_header(0)) + len(self.left) * 2 + len(self.trailer)

    def wav_chunks(self, chunk_ms: int = 10_000) -> Iterator[bytes]:
        """The WAV file in pieces: header, stereo samples `chunk_ms` at a time, cue trailer."""
        trailer = self.trailer
        yield wav_header(len(self.left) * 2, len(trailer))
        step = chunk_ms * BYTES_PER_MS
        for begin in range(0, len(self.left), step):
            yield bytes(
                interleave(self.left[begin : begin + step], self.right[begin : begin + step])
            )
        if trailer:
            yield trailer

    def wav(self) -> bytes:
        return b"".join(self.wav_chunks())


def render(plan: AudioPlan, user: StoredStream, assistant: StoredStream) -> RenderedAudio:
    size = plan.track_bytes
    left, user_markers = _render_track(plan.user, user, size, "user")
    right, assistant_markers = _render_track(plan.assistant, assistant, size, "assistant")
    markers = sorted(user_markers + assistant_markers, key=lambda m: (m.start_ms, m.channel))
    return RenderedAudio(size // BYTES_PER_MS, markers, left, right)


def plan_audio(events: Iterable[StoredEvent], analysis: Analysis) -> AudioPlan:
    planner = AudioPlanner()
    for event in events:
        planner.feed(event)
    return planner.plan(analysis)
