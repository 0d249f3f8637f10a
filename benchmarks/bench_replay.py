"""Replay of a 1-hour session: its log read back to timeline and metrics, and its stereo WAV
export, each next to the raw read of the same rows in the same run.

The session is written straight into a scratch database with COPY (the store's writer would
stamp every event with the time of writing; a replay benchmark needs an hour of wall clock):
120 turns of 30 s, the user's microphone streamed all hour (50 frames a second, their forwarding
to the model recorded as the gateway does, a row per run of 12 appends), the
assistant answering each turn for 12 s in 100 ms deltas, with transcripts, context updates,
a tool call every fourth turn and a barge-in every tenth. About 214,000 events and 240 MB of
audio (173 MB of microphone, 69 MB of answers).

- timeline + metrics: `ReplayReader.analyse` (reads every event through the store, builds the
  analysis, refreshes the search summary). Raw: the same keyset pages fetched with asyncpg,
  rows dropped. Goal: ≤ 2 s, and ≥ 0.5 of the raw read's speed.
- WAV export: `ReplayReader.export_audio` plus the whole file's bytes (log, both audio streams,
  placement, render, interleave). Raw: the audio chunk rows fetched. Goal: ≥ 50x real time.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from benchmarks.bench_store import database
from services.gateway.model_pump import (
    FORWARDED_ID_PREFIX,
    FORWARDED_KIND,
    RUN_MAX_AGE_S,
    run_payload,
)
from services.replay.access import local_caller
from services.replay.service import ReplayReader
from services.store import EventStore
from services.store.flusher import CHUNK_COLUMNS, EVENT_COLUMNS
from services.store.migrations import apply_migrations

HOUR_S = 3600
TURN_S = 30
USER_S = 8
ANSWER_S = 12
ROUNDS = 3
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FRAME = 960  # 20 ms
DELTA = 4800  # 100 ms
RUN_FRAMES_AT_PACE = int(RUN_MAX_AGE_S / 0.02)  # frames at 20 ms recorded per run row

_PAGE = """
SELECT session_id, seq, event_id, kind, source, producer_time, receive_time, tx, position,
       client_event_id, audio_stream, audio_offset, audio_length, payload
FROM session_events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""


def hour_of_events(session_id: str, *, seconds: int = HOUR_S) -> tuple[list[tuple], list[tuple]]:
    """The rows of a session `seconds` long (an hour by default): events and audio chunks."""
    events: list[tuple] = []
    chunks: list[tuple] = []
    offsets = {"input": 0, "output": 0}
    pending: dict[str, tuple[int, bytearray, list[int], list[datetime]]] = {}
    noise = os.urandom(DELTA)

    def at(ms: float) -> datetime:
        return T0 + timedelta(milliseconds=ms)

    def add(
        ms: float,
        kind: str,
        payload: object,
        source: str = "model",
        stream: str = "",
        length: int = 0,
    ) -> None:
        seq = len(events) + 1
        ref: tuple[str | None, int | None, int | None] = (None, None, None)
        if stream:
            start, data, frame_offsets, times = pending.setdefault(
                stream, (offsets[stream], bytearray(), [], [])
            )
            frame_offsets.append(len(data))
            times.append(at(ms))
            data += noise[:length]
            ref = (stream, offsets[stream], length)
            offsets[stream] += length
            if len(data) >= 48_000:
                chunks.append((session_id, stream, start, bytes(data), frame_offsets, times))
                del pending[stream]
        text = payload if isinstance(payload, str) else json.dumps(payload)
        events.append((session_id, seq, f"e{seq}", kind, source, None, at(ms), None, *ref, text))

    add(0, "session.started", {"tenant_id": "bench", "prompt_hash": "ab" * 32}, "gateway")
    add(5, "client.attach", {"connection_id": "c"}, "client")
    for turn in range(seconds // TURN_S):
        base = turn * TURN_S * 1000
        rid, item = f"resp_{turn}", f"item_a{turn}"
        add(
            base + 10,
            "client.screen_state",
            {"state": {"step": turn}, "hash": f"h{turn}"},
            "client",
        )
        add(base + 100, "model.server.input_audio_buffer.speech_started", {"item_id": f"u{turn}"})
        speech_end = base + 100 + USER_S * 1000
        add(speech_end, "model.server.input_audio_buffer.speech_stopped", {"item_id": f"u{turn}"})
        add(speech_end, "model.server.input_audio_buffer.committed", {"item_id": f"u{turn}"})
        add(
            speech_end + 2,
            "decision.context_injected",
            {"item_id": f"ctx{turn}", "hash": "h"},
            "gateway",
        )
        add(speech_end + 2, "decision.response_requested", {"reason": "turn_committed"}, "gateway")
        add(speech_end + 2, "model.client.response.create", {"type": "response.create"}, "gateway")
        add(
            speech_end + 30,
            "model.server.conversation.item.input_audio_transcription.completed",
            {"item_id": f"u{turn}", "transcript": "so what do I do next with this fraction"},
        )
        add(speech_end + 40, "model.server.response.created", {"response": {"id": rid}})
        add(
            speech_end + 41,
            "model.server.response.output_item.added",
            {"response_id": rid, "item": {"type": "message", "id": item}},
        )
        first = speech_end + 400
        for i in range(ANSWER_S * 10):
            add(
                first + i * 40,
                "model.server.response.output_audio.delta",
                {"response_id": rid, "item_id": item},
                stream="output",
                length=DELTA,
            )
            if i % 5 == 0:
                add(
                    first + i * 40,
                    "model.server.response.output_audio_transcript.delta",
                    {"response_id": rid, "delta": " word"},
                )
        add(
            first + ANSWER_S * 400,
            "model.server.response.output_audio_transcript.done",
            {"response_id": rid, "transcript": "a fraction has two parts " * 8},
        )
        if turn % 4 == 0:
            add(
                first + 500,
                "model.server.response.function_call_arguments.done",
                {
                    "response_id": rid,
                    "call_id": f"c{turn}",
                    "name": "check_answer",
                    "arguments": "{}",
                },
            )
        usage = {
            "input_tokens": 900,
            "output_tokens": 300,
            "output_token_details": {"audio_tokens": 250, "text_tokens": 50},
        }
        add(
            first + ANSWER_S * 400,
            "model.server.response.done",
            {"response": {"id": rid, "status": "completed", "usage": usage}},
        )
        if turn % 4 == 0:
            add(
                first + ANSWER_S * 400,
                "decision.tool_held",
                {"call_id": f"c{turn}", "name": "check_answer", "response": rid},
                "gateway",
            )
        played = first + ANSWER_S * 1000
        if turn % 10 == 9:
            add(first + 5000, "model.server.input_audio_buffer.speech_started", {"item_id": "x"})
            add(
                first + 5000,
                "decision.truncated",
                {"item_id": item, "audio_end_ms": 4600, "generated_ms": ANSWER_S * 1000},
                "gateway",
            )
            played = first + 5000
        add(played, "decision.playback_done", {"response_id": rid, "estimated": False}, "gateway")
        if turn % 4 == 0:
            add(
                played + 60,
                "decision.tool_output",
                {
                    "call_id": f"c{turn}",
                    "name": "check_answer",
                    "outcome": "succeeded",
                    "output": "{}",
                    "started_at": at(played + 20).isoformat(),
                },
                "workflow",
            )
    # The microphone, all hour: each frame, and its forwarding to the model recorded as the
    # gateway does (a run row per RUN_FRAMES_AT_PACE frames), merged in time order.
    run_ids: list[str] = []
    run_sent: list[int] = []
    mic = [i * 20 + 20 for i in range(seconds * 50)]
    others = events
    events = []
    j = 0
    for ms in mic:
        while j < len(others) and others[j][6] <= at(ms):
            row = others[j]
            events.append((row[0], len(events) + 1, *row[2:]))
            j += 1
        add(ms, "client.audio", {}, "client", stream="input", length=FRAME)
        run_ids.append(f"{FORWARDED_ID_PREFIX}{len(events)}")
        run_sent.append(int(at(ms).timestamp() * 1_000_000))
        if len(run_ids) == RUN_FRAMES_AT_PACE:
            add(ms, FORWARDED_KIND, run_payload(run_ids, run_sent), "gateway")
            run_ids, run_sent = [], []
    for row in others[j:]:
        events.append((row[0], len(events) + 1, *row[2:]))
    for stream, (start, data, frame_offsets, times) in pending.items():
        chunks.append((session_id, stream, start, bytes(data), frame_offsets, times))
    return events, chunks


COLUMNS = EVENT_COLUMNS  # the store's own columns, in its order


async def raw_read(pool: asyncpg.Pool, session_id: str) -> tuple[float, int]:
    started = time.perf_counter()
    last, rows = 0, 0
    while True:
        page = await pool.fetch(_PAGE, session_id, last, 5000)
        rows += len(page)
        if len(page) < 5000:
            return time.perf_counter() - started, rows
        last = page[-1][1]


async def raw_audio(pool: asyncpg.Pool, session_id: str) -> float:
    started = time.perf_counter()
    for stream in ("input", "output"):
        offset = 0
        while True:
            page = await pool.fetch(
                "SELECT start_offset, data FROM audio_chunks WHERE session_id = $1 AND stream = $2"
                " AND start_offset >= $3 ORDER BY start_offset LIMIT 64",
                session_id,
                stream,
                offset,
            )
            if len(page) < 64:
                break
            offset = page[-1][0] + 1
    return time.perf_counter() - started


async def main() -> None:
    session_id = "bench-hour"
    async with database() as url:
        await apply_migrations(url)
        events, chunks = hour_of_events(session_id)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO sessions (session_id, tenant_id, status, config, prompt_hash,"
                " created_at, ended_at) VALUES ($1, 'bench', 'ended', '{}', 'ab', $2, $3)",
                session_id,
                T0,
                T0 + timedelta(hours=1),
            )
            await conn.copy_records_to_table("session_events", records=events, columns=COLUMNS)
            await conn.copy_records_to_table("audio_chunks", records=chunks, columns=CHUNK_COLUMNS)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        audio_mb = sum(len(c[3]) for c in chunks) / 1e6
        print(f"1-hour session: {len(events):,} events, {audio_mb:.0f} MB of audio in 2 streams")
        async with await EventStore.open(url) as store:
            reader = ReplayReader(store)
            record = await reader.session(local_caller(), session_id)
            assert record is not None
            raw_s, analysis_s, raw_audio_s, export_s = [], [], [], []
            for _ in range(ROUNDS):
                seconds, rows = await raw_read(store.pool, session_id)
                assert rows == len(events)
                raw_s.append(seconds)
                started = time.perf_counter()
                analysis, _ = await reader.analyse(record)
                analysis_s.append(time.perf_counter() - started)
                assert len(analysis.turns) >= HOUR_S // TURN_S
                raw_audio_s.append(await raw_audio(store.pool, session_id))
                started = time.perf_counter()
                _, audio = await reader.export_audio(record)
                size = sum(len(chunk) for chunk in audio.wav_chunks())
                export_s.append(time.perf_counter() - started)
                del audio
        raw, analysed = statistics.median(raw_s), statistics.median(analysis_s)
        raw_a, export = statistics.median(raw_audio_s), statistics.median(export_s)
        print(
            f"raw read of the log:      {raw:6.2f} s  ({len(events) / raw:,.0f} rows/s)\n"
            f"timeline + metrics:       {analysed:6.2f} s  ({len(events) / analysed:,.0f} events/s)"
            f"  = {raw / analysed:.2f}x the raw read (goal >= 0.5); goal <= 2 s: "
            f"{'met' if analysed <= 2 else 'MISSED'}"
        )
        print(
            f"raw read of the audio:    {raw_a:6.2f} s  ({audio_mb / raw_a:,.0f} MB/s)\n"
            f"stereo WAV export:        {export:6.2f} s  ({size / 1e6:.0f} MB) = "
            f"{HOUR_S / export:.0f}x real time (goal >= 50x): "
            f"{'met' if HOUR_S / export >= 50 else 'MISSED'}"
        )
        print(f"medians of {ROUNDS} rounds, alternating raw and replay")
