"""The append path: gapless per-session seq under concurrency, durability on demand,
idempotency by client event id, verbatim payloads, and a loud stop on a second writer."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.store import (
    DuplicateClientEvent,
    EventStore,
    WriterClosed,
    WriterConflict,
)
from services.store import writer as writer_module
from tests.store.conftest import new_id


async def collect(store: EventStore, session_id: str, **kwargs: int) -> list:
    return [e async for e in store.read_events(session_id, **kwargs)]


async def test_concurrent_sessions_keep_seq_gapless_and_ordered(store: EventStore) -> None:
    sessions = [new_id("many") for _ in range(50)]
    per_session = 200

    async def produce(session_id: str) -> None:
        writer = await store.open_writer(session_id)
        for i in range(per_session):
            seq = writer.append(kind="test.tick", source="test", payload={"i": i})
            assert seq == i + 1
            if i % 7 == 0:
                await asyncio.sleep(0)  # interleave with the other sessions and the flushers
        await writer.close()

    await asyncio.gather(*(produce(s) for s in sessions))
    for session_id in sessions:
        events = await collect(store, session_id)
        assert [e.seq for e in events] == list(range(1, per_session + 1))
        assert [e.payload["i"] for e in events] == list(range(per_session))
        positions = [e.global_position for e in events]
        assert positions == sorted(positions)  # one writer's batches commit in seq order
        assert len({e.event_id for e in events}) == per_session


async def test_read_events_streams_across_batches(store: EventStore) -> None:
    session_id = new_id("stream")
    writer = await store.open_writer(session_id)
    for i in range(2_500):
        writer.append(kind="test.tick", source="test", payload={"i": i})
    await writer.close()

    events = await collect(store, session_id, batch_size=1000)
    assert [e.seq for e in events] == list(range(1, 2_501))
    tail = await collect(store, session_id, after_seq=1_234, batch_size=7)
    assert [e.seq for e in tail] == list(range(1_235, 2_501))
    exact = await collect(store, session_id, after_seq=1_500, batch_size=500)
    assert [e.seq for e in exact] == list(range(1_501, 2_501))
    assert await collect(store, session_id, after_seq=2_500) == []
    assert await collect(store, new_id("none")) == []


async def test_flush_makes_appends_durable(store: EventStore, pg_url: str) -> None:
    session_id = new_id("durable")
    # A long interval, so only the explicit flush can have written the rows.
    writer = await store.open_writer(session_id, flush_interval=60)
    seqs = [
        writer.append(kind="decision.tool_scheduled", source="gateway", payload={"n": n})
        for n in range(3)
    ]
    assert writer.durable_seq == 0
    assert await writer.flush() == seqs[-1] == writer.durable_seq
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT seq, kind FROM session_events WHERE session_id = $1 ORDER BY seq", session_id
        )
    finally:
        await conn.close()
    assert [(r["seq"], r["kind"]) for r in rows] == [(s, "decision.tool_scheduled") for s in seqs]
    await writer.close()


async def test_background_flush_without_waiting(store: EventStore, pg_url: str) -> None:
    session_id = new_id("background")
    writer = await store.open_writer(session_id)
    writer.append(kind="model.server.response.done", source="model", payload={})
    for _ in range(100):  # ~50 ms tick; allow for a slow machine
        if await store.last_seq(session_id) == 1:
            break
        await asyncio.sleep(0.02)
    assert await store.last_seq(session_id) == 1
    await writer.close()


async def test_fields_and_verbatim_payloads(store: EventStore) -> None:
    session_id = new_id("fields")
    writer = await store.open_writer(session_id)
    raw = '{"type": "response.done",   "response": {"b": 1, "a": [1.50, "é"]}}'
    produced = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    before = datetime.now(UTC)
    writer.append(
        kind="model.server.response.done",
        source="model",
        payload=raw,
        event_id="event_B4x",
        producer_time=produced,
    )
    writer.append(kind="client.text", source="client", payload={"text": "héllo", "n": 1.5})
    with pytest.raises(ValueError):
        writer.append(kind="bad", source="test", payload="{not json")
    with pytest.raises(ValueError):
        writer.append(kind="bad", source="test", payload={"x": float("nan")})
    with pytest.raises(ValueError):
        writer.append(kind="bad", source="test", payload={"x": "lone \ud800 surrogate"})
    with pytest.raises(ValueError):
        writer.append(kind="bad\x00", source="test", payload={})
    with pytest.raises(ValueError):
        writer.append(kind="bad", source="test", payload={}, client_event_id="c\x00")
    with pytest.raises(ValueError):
        writer.append(kind="bad", source="test", payload={}, producer_time=datetime(2026, 1, 1))
    assert writer.last_seq == 2  # refused appends take no seq
    writer.append(kind="after.bad", source="test", payload={})  # the writer goes on
    await writer.close()

    first, second, third = await collect(store, session_id)
    assert first.payload_json == raw  # byte for byte: spacing, order, number format
    assert first.event_id == "event_B4x"
    assert first.kind == "model.server.response.done" and first.source == "model"
    assert first.producer_time == produced
    assert before <= first.receive_time <= datetime.now(UTC)
    assert first.audio is None and first.client_event_id is None
    assert second.payload_json == '{"text":"héllo","n":1.5}'
    assert uuid.UUID(second.event_id).version == 8  # generated ids are UUIDs
    assert second.producer_time is None
    assert (third.seq, third.kind) == (3, "after.bad")


async def test_client_event_ids_are_recorded_once(store: EventStore, pg_url: str) -> None:
    session_id = new_id("dedup")
    writer = await store.open_writer(session_id)
    assert not writer.seen("c-1")
    writer.append(kind="client.text", source="client", payload={"t": 1}, client_event_id="c-1")
    assert writer.seen("c-1")
    with pytest.raises(DuplicateClientEvent):
        writer.append(kind="client.text", source="client", payload={"t": 2}, client_event_id="c-1")
    with pytest.raises(DuplicateClientEvent):
        writer.append_audio(
            stream="input",
            pcm=b"\0\0",
            kind="client.audio",
            source="client",
            payload={},
            client_event_id="c-1",
        )
    writer.append(kind="client.text", source="client", payload={"t": 3}, client_event_id="c-2")
    await writer.close()
    assert [e.client_event_id for e in await collect(store, session_id)] == ["c-1", "c-2"]

    # Another process (another store) re-attaching the session still knows the ids.
    other = await EventStore.open(pg_url, min_size=1, max_size=2)
    try:
        resumed = await other.open_writer(session_id)
        assert resumed.seen("c-1") and resumed.seen("c-2") and not resumed.seen("c-3")
        assert resumed.last_seq == 2
        assert resumed.append(kind="client.text", source="client", payload={}) == 3
        await resumed.close()
    finally:
        await other.close()


async def test_one_writer_per_session_per_store(store: EventStore) -> None:
    session_id = new_id("single")
    first, second = await asyncio.gather(
        store.open_writer(session_id), store.open_writer(session_id)
    )
    assert first is second
    first.append(kind="x", source="test", payload={})
    await first.close()
    with pytest.raises(WriterClosed):
        first.append(kind="x", source="test", payload={})
    await first.close()  # closing twice is harmless
    reopened = await store.open_writer(session_id)
    assert reopened is not first
    assert reopened.append(kind="x", source="test", payload={}) == 2
    await reopened.close()


async def test_second_writer_fails_loudly(
    store: EventStore, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = new_id("conflict")
    first = await store.open_writer(session_id)
    for i in range(5):
        first.append(kind="test.first", source="test", payload={"i": i})
    await first.flush()

    elsewhere = await EventStore.open(pg_url, min_size=1, max_size=2)
    try:
        second = await elsewhere.open_writer(session_id)  # another "process": resumes at 5
        for i in range(5, 8):
            first.append(kind="test.first", source="test", payload={"i": i})
        await first.flush()

        assert second.append(kind="test.second", source="test", payload={}) == 6
        with caplog.at_level(logging.ERROR), pytest.raises(WriterConflict):
            await second.flush()
        assert any("another writer" in r.getMessage() for r in caplog.records)
        with pytest.raises(WriterConflict):
            second.append(kind="test.second", source="test", payload={})
        with pytest.raises(WriterConflict):
            await second.flush()
        with pytest.raises(WriterConflict):
            await second.close()
    finally:
        await elsewhere.close()

    first.append(kind="test.first", source="test", payload={"i": 8})
    await first.close()
    events = await collect(store, session_id)
    assert [e.seq for e in events] == list(range(1, 10))
    assert {e.kind for e in events} == {"test.first"}
    assert [e.payload["i"] for e in events] == list(range(9))


async def test_conflict_found_by_the_background_flush(store: EventStore, pg_url: str) -> None:
    session_id = new_id("conflict-bg")
    first = await store.open_writer(session_id)
    elsewhere = await EventStore.open(pg_url, min_size=1, max_size=2)
    try:
        second = await elsewhere.open_writer(session_id)
        first.append(kind="test.first", source="test", payload={})
        await first.flush()
        second.append(kind="test.second", source="test", payload={})  # seq 1 again
        for _ in range(100):
            await asyncio.sleep(0.02)
            if second.closed:
                break
        with pytest.raises(WriterConflict):
            second.append(kind="test.second", source="test", payload={})
        # The store forgot the stopped writer, so the session can be re-opened there.
        assert await elsewhere.open_writer(session_id) is not second
    finally:
        await elsewhere.close()
    await first.close()
    assert [e.kind for e in await collect(store, session_id)] == ["test.first"]


async def test_one_tick_writes_every_session_in_one_copy(store: EventStore) -> None:
    """The background flush is per process, not per session: twenty sessions' queues go out in
    one tick (one COPY), each still gapless and in order."""
    writers = [await store.open_writer(new_id("shared")) for _ in range(20)]
    ticks = store._flusher.ticks
    for writer in writers:
        for i in range(3):
            writer.append(kind="test.shared", source="test", payload={"i": i})
    for _ in range(100):
        await asyncio.sleep(0.02)
        if all(w.durable_seq == 3 for w in writers):
            break
    assert [w.durable_seq for w in writers] == [3] * 20
    assert store._flusher.ticks - ticks == 1
    for writer in writers:
        await writer.close()
        assert [e.payload["i"] for e in await collect(store, writer.session_id)] == [0, 1, 2]


async def test_a_conflict_in_a_shared_batch_stops_only_its_writer(
    store: EventStore, pg_url: str
) -> None:
    """One session's rows meeting another process's: the shared COPY rolls back whole, each
    writer is flushed alone, and only the one that conflicts stops."""
    bystanders = [await store.open_writer(new_id("bystander")) for _ in range(5)]
    session_id = new_id("conflict-shared")
    elsewhere = await EventStore.open(pg_url, min_size=1, max_size=2)
    try:
        other = await elsewhere.open_writer(session_id)
        other.append(kind="test.other", source="test", payload={})
        await other.flush()
        late = await store.open_writer(session_id)
        late._seq = 0  # as if it had resumed just before the other process wrote seq 1
        late.append(kind="test.late", source="test", payload={})
        for writer in bystanders:
            writer.append(kind="test.bystander", source="test", payload={})
        for _ in range(100):
            await asyncio.sleep(0.02)
            if late.closed and all(w.durable_seq == 1 for w in bystanders):
                break
        with pytest.raises(WriterConflict):
            late.append(kind="test.late", source="test", payload={})
        assert [w.durable_seq for w in bystanders] == [1] * 5
        await other.close()
    finally:
        await elsewhere.close()
    assert [e.kind for e in await collect(store, session_id)] == ["test.other"]
    for writer in bystanders:
        await writer.close()
        assert [e.kind for e in await collect(store, writer.session_id)] == ["test.bystander"]


async def test_payload_dict_is_compact_json(store: EventStore) -> None:
    session_id = new_id("compact")
    writer = await store.open_writer(session_id)
    payload = {"nested": {"list": [1, 2, {"k": None}]}, "flag": True}
    writer.append(kind="k", source="s", payload=payload)
    await writer.close()
    (event,) = await collect(store, session_id)
    assert event.payload_json == json.dumps(payload, separators=(",", ":"))
    assert event.payload == payload


async def test_transient_failure_keeps_the_batch(store: EventStore, pg_url: str) -> None:
    session_id = new_id("transient")
    writer = await store.open_writer(session_id, flush_interval=60)
    for i in range(3):
        writer.append(kind="test.kept", source="test", payload={"i": i})
    admin = await asyncpg.connect(pg_url)
    try:
        # An uncommitted row with the same key makes the writer's COPY wait on this
        # transaction (and nobody else's); then its connection is killed mid-transaction.
        blocker = admin.transaction()
        await blocker.start()
        await admin.execute(
            "INSERT INTO session_events (session_id, seq, event_id, kind, source,"
            " receive_time, payload) VALUES ($1, 1, 'blocker', 'b', 'b', now(), '{}')",
            session_id,
        )
        flushing = asyncio.create_task(writer.flush())
        pid = None
        for _ in range(250):
            await asyncio.sleep(0.02)
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity"
                " WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            if pid is not None:
                break
        assert pid is not None
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresError, OSError)):
            await flushing
        await blocker.rollback()
    finally:
        await admin.close()
    assert not writer.closed
    writer.append(kind="test.kept", source="test", payload={"i": 3})
    assert await writer.flush() == 4  # the failed batch went first, in order
    await writer.close()
    assert [e.payload["i"] async for e in store.read_events(session_id)] == [0, 1, 2, 3]


async def test_batch_in_doubt_is_not_written_twice(store: EventStore) -> None:
    # The connection broke during COMMIT: the batch committed but the writer saw an error and
    # requeued it. Writing it again would look like a conflict; the writer checks first.
    session_id = new_id("doubt")
    writer = await store.open_writer(session_id, flush_interval=60)
    writer.append(kind="test.doubt", source="test", payload={"i": 0})
    writer.append(kind="test.doubt", source="test", payload={"i": 1})
    committed = list(writer._pending)
    await writer.flush()
    writer._pending[:0] = committed  # as the error path requeues it
    writer._doubt_events = len(committed)
    writer.append(kind="test.doubt", source="test", payload={"i": 2})
    assert await writer.flush() == 3
    await writer.close()
    assert [e.payload["i"] async for e in store.read_events(session_id)] == [0, 1, 2]


async def test_each_flush_is_a_span(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(writer_module, "_tracer", provider.get_tracer("test"))

    session_id = new_id("span")
    writer = await store.open_writer(session_id, flush_interval=60)
    for _ in range(3):
        writer.append(kind="k", source="s", payload={})
    writer.append_audio(stream="output", pcm=b"\0" * 960, kind="a", source="s", payload={})
    await writer.flush()
    await writer.close()
    (span,) = exporter.get_finished_spans()
    assert span.name == "store.flush"
    assert span.attributes is not None
    assert span.attributes["store.events"] == 4
    assert span.attributes["store.audio_chunks"] == 1
    assert span.attributes["store.audio_bytes"] == 960
    assert span.attributes["earpiece.session_id"] == session_id


def test_client_id_memory_is_bounded_and_says_which_ids_to_ask_postgres_about() -> None:
    index = writer_module.ClientIdIndex(window=100)
    for seq in range(1, 20_001):
        index.add(f"id-{seq}", seq, durable_seq=seq)
    assert len(index) == 100  # the window, however many ids the session has used
    assert "id-20000" in index and "id-1" not in index
    assert all(index.maybe_older(f"id-{seq}") for seq in range(1, 20_001, 97))  # no misses
    false_positives = sum(index.maybe_older(f"new-{i}") for i in range(10_000))
    assert false_positives < 100  # almost every new id costs no query
    # An id not yet durable is never forgotten: Postgres could not answer for it.
    for seq in range(20_001, 20_301):
        index.add(f"id-{seq}", seq, durable_seq=20_000)
    assert len(index) == 300 and "id-20001" in index
    index.trim(20_300)
    assert len(index) == 100


class FlakyLink:
    """A TCP proxy to the test Postgres that the test can cut (every connection dropped, new
    ones refused) and restore: a dropped connection, for real."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
                self._pipes.discard(dst)

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_dropped_connection_holds_events_signals_overflow_and_drains(
    store: EventStore, pg_url: str
) -> None:
    """A dropped connection is transient: appends go on, the writer says when the outage has
    outlasted its buffer, a close() meanwhile hands the events to the background, and they are
    all written once Postgres is reachable again."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(pg_url)
    socket_dir = parse_qs(parts.query)["host"][0]
    link = FlakyLink(f"{socket_dir}/.s.PGSQL.{parts.port or 5432}")
    await link.up()
    pool = await asyncpg.create_pool(
        f"postgresql://{parts.username}@127.0.0.1:{link.port}{parts.path}", min_size=0, max_size=2
    )
    session_id = new_id("flaky")
    writer = writer_module.SessionWriter(
        pool=pool,
        session_id=session_id,
        last_seq=0,
        seen=set(),
        audio_ends={},
        buffer_seconds=1.0,
    )
    try:
        for i in range(10):
            writer.append(kind="test.flaky", source="test", payload={"i": i})
        assert await writer.flush() == 10
        await link.down()
        for i in range(10, 30):
            writer.append(kind="test.flaky", source="test", payload={"i": i})
            await asyncio.sleep(0.05)
        async with asyncio.timeout(10):
            await writer.overflowed.wait()
        assert not writer.closed and writer.pending_events == 20 and writer.failing_for > 1.0
        with pytest.raises((OSError, asyncpg.InterfaceError, asyncpg.PostgresError)):
            await writer.close()
        assert writer.closing
        await link.up()
        async with asyncio.timeout(15):
            await writer.drained()
        assert writer.closed and writer.durable_seq == 30
    finally:
        await pool.close()
    assert [e.payload["i"] async for e in store.read_events(session_id)] == list(range(30))
