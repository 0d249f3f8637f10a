"""The replay reads behind both the gRPC API and the CLI: visibility by tenant, the audit record
of every read, the analysis of a session's log, its stored audio, search and retention settings.

Everything here is rebuilt from the event log (and the audio it points at); the tables this
module writes are beside the log: `replay_audit` (append-only) and `session_summaries` (derived,
rebuilt whenever it is older than the log).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from services.replay.access import Caller
from services.replay.analysis import Analysis, Analyzer
from services.replay.audio import AudioPlanner, RenderedAudio, StoredStream, render
from services.replay.prices import PriceTable
from services.store.event_store import EventStore
from services.store.events import AudioStream, SessionRecord, StoredEvent

_AUDIO_PAGE = """
SELECT start_offset, data FROM audio_chunks
WHERE session_id = $1 AND stream = $2 AND start_offset >= $3
ORDER BY start_offset LIMIT 64
"""

_ANALYSIS_PAGE = """
SELECT seq, kind, receive_time, audio_stream, audio_offset, audio_length, payload
FROM session_events
WHERE session_id = $1 AND seq > $2 AND kind <> 'model.client.input_audio_buffer.append'
ORDER BY seq LIMIT $3
"""
_PAGE_ROWS = 5000

_PURGES = """
SELECT start_offset, end_offset FROM audio_purges WHERE session_id = $1 AND stream = $2
ORDER BY start_offset
"""


@dataclass
class AuditQuery:
    tenant_id: str | None = None
    session_id: str | None = None
    key_id: str | None = None
    action: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    limit: int = 100


@dataclass
class AuditRow:
    audit_id: int
    at: datetime
    key_id: str
    tenant_id: str
    role: str
    action: str
    session_id: str | None
    peer: str
    detail: dict[str, Any]


@dataclass
class SearchFilters:
    tenant_id: str | None = None  # None: every tenant (admins)
    created_after: datetime | None = None
    created_before: datetime | None = None
    status: str | None = None
    prompt_hash: str | None = None
    persona: str | None = None
    tool_name: str | None = None
    error_kind: str | None = None
    min_first_audio_latency_ms: int | None = None
    min_interruptions: int | None = None
    text: str | None = None
    page_size: int = 50
    page_token: str = ""


@dataclass
class SummaryRow:
    session_id: str
    tenant_id: str
    status: str
    created_at: datetime
    prompt_hash: str
    persona: str
    turns: int
    tool_names: list[str]
    error_kinds: list[str]
    interruptions: int
    first_audio_p50_ms: int | None
    first_audio_max_ms: int | None
    cost_usd: float
    duration_ms: int
    rerun_of: str
    snippet: str = ""


@dataclass
class SearchResult:
    sessions: list[SummaryRow] = field(default_factory=list)
    next_page_token: str = ""


def _token(created_at: datetime, session_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), session_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _untoken(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        at, sid = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(at), str(sid)
    except (ValueError, TypeError) as exc:
        raise ValueError("page_token is not one this server returned") from exc


def summary_transcript(analysis: Analysis) -> str:
    parts: list[str] = []
    for turn in analysis.turns:
        if turn.user_transcript:
            parts.append(turn.user_transcript)
        for rid in turn.responses:
            r = analysis.responses.get(rid)
            if r is not None and r.heard_transcript:
                parts.append(r.heard_transcript)
    return "\n".join(parts)


class ReplayReader:
    def __init__(self, store: EventStore, *, prices: PriceTable | None = None) -> None:
        self.store = store
        self.prices = prices or PriceTable.from_env()

    @property
    def pool(self) -> asyncpg.Pool:
        return self.store.pool

    # -- visibility and audit ----------------------------------------------------------------

    async def session(self, caller: Caller, session_id: str) -> SessionRecord | None:
        """The session if it exists and the caller may see it; None either way otherwise."""
        record = await self.store.get_session(session_id)
        if record is None or not caller.may_see(record.tenant_id):
            return None
        return record

    async def audit(
        self,
        caller: Caller,
        action: str,
        *,
        session_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Appends one record to the audit trail (never to the session's own log)."""
        await self.pool.execute(
            "INSERT INTO replay_audit (key_id, tenant_id, role, action, session_id, peer, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
            caller.key_id,
            caller.tenant_id,
            caller.role,
            action,
            session_id,
            caller.peer,
            json.dumps(detail or {}, sort_keys=True),
        )

    async def query_audit(self, query: AuditQuery) -> list[AuditRow]:
        rows = await self.pool.fetch(
            """
            SELECT audit_id, at, key_id, tenant_id, role, action, session_id, peer, detail
            FROM replay_audit
            WHERE ($1::text IS NULL OR tenant_id = $1)
              AND ($2::text IS NULL OR session_id = $2)
              AND ($3::text IS NULL OR key_id = $3)
              AND ($4::text IS NULL OR action = $4)
              AND ($5::timestamptz IS NULL OR at >= $5)
              AND ($6::timestamptz IS NULL OR at < $6)
            ORDER BY audit_id DESC LIMIT $7
            """,
            query.tenant_id,
            query.session_id,
            query.key_id,
            query.action,
            query.after,
            query.before,
            max(1, min(query.limit or 100, 10_000)),
        )
        return [
            AuditRow(
                audit_id=r["audit_id"],
                at=r["at"],
                key_id=r["key_id"],
                tenant_id=r["tenant_id"],
                role=r["role"],
                action=r["action"],
                session_id=r["session_id"],
                peer=r["peer"],
                detail=json.loads(r["detail"]),
            )
            for r in rows
        ]

    # -- analysis ------------------------------------------------------------------------------

    def events(self, session_id: str, *, after_seq: int = 0) -> AsyncIterator[StoredEvent]:
        return self.store.read_events(session_id, after_seq=after_seq, batch_size=5000)

    async def _rows(self, session_id: str) -> AsyncIterator[list[asyncpg.Record]]:
        """The log in pages of the columns replay reads, without the model-bound copies of the
        user's audio (`model.client.input_audio_buffer.append`: the same audio as the
        `client.audio` event before it, and nothing else)."""
        last = 0
        while True:
            page = await self.pool.fetch(_ANALYSIS_PAGE, session_id, last, _PAGE_ROWS)
            if page:
                yield page
            if len(page) < _PAGE_ROWS:
                return
            last = page[-1][0]

    async def analyse(
        self,
        record: SessionRecord,
        *,
        with_audio: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[Analysis, AudioPlanner | None]:
        """The session's analysis from its log (and the audio plan when asked), refreshing its
        search summary on the way. `progress(seq)` is called every 5,000 events."""
        analyzer = Analyzer(self.prices)
        planner = AudioPlanner() if with_audio else None
        last_seq = 0
        session_id = record.session_id
        feed = analyzer.feed_row
        async for page in self._rows(session_id):
            for _, kind, at, stream, offset, length, payload in page:
                feed(session_id, kind, at, stream, length or 0, payload)
                if planner is not None:
                    planner.feed_row(kind, at, stream, offset or 0, length or 0, payload)
            last_seq = page[-1][0]
            if progress is not None:
                progress(last_seq)
        analysis = analyzer.finish()
        # seq is gapless: the log's own count, including the rows replay does not read.
        analysis.event_count = max(last_seq, await self.store.last_seq(session_id))
        analysis.tenant_id = analysis.tenant_id or record.tenant_id
        await self._store_summary(record, analysis, analysis.event_count)
        return analysis, planner

    async def stored_stream(self, session_id: str, stream: AudioStream) -> StoredStream:
        parts: list[bytes] = []
        stored: list[tuple[int, int]] = []
        position = 0
        next_offset = 0
        while True:
            rows = await self.pool.fetch(_AUDIO_PAGE, session_id, stream, next_offset)
            for start, data in rows:
                if start > position:
                    parts.append(bytes(start - position))
                parts.append(data)
                position = start + len(data)
                if stored and stored[-1][1] == start:
                    stored[-1] = (stored[-1][0], position)
                else:
                    stored.append((start, position))
            if len(rows) < 64:
                break
            next_offset = rows[-1][0] + 1
        purged = [(r[0], r[1]) for r in await self.pool.fetch(_PURGES, session_id, stream)]
        return StoredStream(b"".join(parts), stored, purged)

    async def export_audio(
        self, record: SessionRecord, *, progress: Callable[[int], None] | None = None
    ) -> tuple[Analysis, RenderedAudio]:
        analysis, planner = await self.analyse(record, with_audio=True, progress=progress)
        assert planner is not None
        plan = planner.plan(analysis)
        user = await self.stored_stream(record.session_id, "input")
        assistant = await self.stored_stream(record.session_id, "output")
        return analysis, render(plan, user, assistant)

    async def audio_purged(self, session_id: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM audio_purges WHERE session_id = $1)", session_id
        )
        return bool(found)

    # -- search ----------------------------------------------------------------------------------

    async def _store_summary(self, record: SessionRecord, a: Analysis, last_seq: int) -> None:
        m = a.metrics
        assert m is not None
        tools = sorted({c.name for c in a.tools.values() if c.name})
        errors = sorted({e.kind for e in a.errors} | {e.code for e in a.errors if e.code})
        await self.pool.execute(
            """
            INSERT INTO session_summaries (session_id, tenant_id, last_seq, turns, tool_names,
                error_kinds, interruptions, first_audio_p50_ms, first_audio_max_ms,
                earpiece_p50_ms, cost_usd, duration_ms, persona, rerun_of, transcript, built_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now())
            ON CONFLICT (session_id) DO UPDATE SET
                last_seq = EXCLUDED.last_seq, turns = EXCLUDED.turns,
                tool_names = EXCLUDED.tool_names, error_kinds = EXCLUDED.error_kinds,
                interruptions = EXCLUDED.interruptions,
                first_audio_p50_ms = EXCLUDED.first_audio_p50_ms,
                first_audio_max_ms = EXCLUDED.first_audio_max_ms,
                earpiece_p50_ms = EXCLUDED.earpiece_p50_ms, cost_usd = EXCLUDED.cost_usd,
                duration_ms = EXCLUDED.duration_ms, persona = EXCLUDED.persona,
                rerun_of = EXCLUDED.rerun_of, transcript = EXCLUDED.transcript, built_at = now()
            WHERE session_summaries.last_seq < EXCLUDED.last_seq
            """,
            record.session_id,
            record.tenant_id,
            last_seq,
            len(a.turns),
            tools,
            errors,
            len(a.interruptions),
            m.first_audio_latency_p50_ms,
            m.first_audio_latency_max_ms,
            m.earpiece_p50_ms,
            m.cost_usd,
            a.duration_ms,
            a.persona,
            a.rerun_of or None,
            summary_transcript(a),
        )

    async def refresh_summaries(self, tenant_id: str | None, *, limit: int = 200) -> int:
        """Builds the summaries that are missing or older than their session's log (on read:
        the first search after a session changed pays for it); a live session's at most once a
        minute, so searching while long sessions run does not re-read them each time. Returns
        how many."""
        rows = await self.pool.fetch(
            """
            SELECT s.session_id FROM sessions s
            LEFT JOIN session_summaries m USING (session_id)
            WHERE ($1::text IS NULL OR s.tenant_id = $1)
              AND (m.session_id IS NULL
                   OR ((s.status = 'ended' OR m.built_at < now() - interval '1 minute')
                       AND m.last_seq < (SELECT coalesce(max(seq), 0) FROM session_events e
                                         WHERE e.session_id = s.session_id)))
            ORDER BY s.created_at DESC LIMIT $2
            """,
            tenant_id,
            limit,
        )
        for row in rows:
            record = await self.store.get_session(row["session_id"])
            if record is not None:
                await self.analyse(record)
        return len(rows)

    async def search(self, f: SearchFilters) -> SearchResult:
        await self.refresh_summaries(f.tenant_id)
        cursor = _untoken(f.page_token)
        size = max(1, min(f.page_size or 50, 500))
        rows = await self.pool.fetch(
            """
            SELECT s.session_id, s.tenant_id, s.status, s.created_at,
                   coalesce(s.prompt_hash, '') AS prompt_hash, m.persona, m.turns, m.tool_names,
                   m.error_kinds, m.interruptions, m.first_audio_p50_ms, m.first_audio_max_ms,
                   m.cost_usd, m.duration_ms, coalesce(m.rerun_of, '') AS rerun_of,
                   CASE WHEN $11::text IS NULL THEN '' ELSE
                     ts_headline('english', m.transcript, websearch_to_tsquery('english', $11),
                                 'StartSel=[, StopSel=], MaxWords=18, MinWords=6') END AS snippet
            FROM sessions s JOIN session_summaries m USING (session_id)
            WHERE ($1::text IS NULL OR s.tenant_id = $1)
              AND ($2::timestamptz IS NULL OR s.created_at >= $2)
              AND ($3::timestamptz IS NULL OR s.created_at < $3)
              AND ($4::text IS NULL OR s.status = $4)
              AND ($5::text IS NULL OR s.prompt_hash LIKE $5 || '%')
              AND ($6::text IS NULL OR lower(m.persona) = lower($6))
              AND ($7::text IS NULL OR $7 = ANY (m.tool_names))
              AND ($8::text IS NULL OR $8 = ANY (m.error_kinds))
              AND ($9::int IS NULL OR m.first_audio_max_ms >= $9)
              AND ($10::int IS NULL OR m.interruptions >= $10)
              AND ($11::text IS NULL OR m.transcript_tsv @@ websearch_to_tsquery('english', $11))
              AND ($12::timestamptz IS NULL OR (s.created_at, s.session_id) < ($12, $13::text))
            ORDER BY s.created_at DESC, s.session_id DESC
            LIMIT $14
            """,
            f.tenant_id,
            f.created_after,
            f.created_before,
            f.status or None,
            f.prompt_hash or None,
            f.persona or None,
            f.tool_name or None,
            f.error_kind or None,
            f.min_first_audio_latency_ms or None,
            f.min_interruptions or None,
            f.text or None,
            cursor[0] if cursor else None,
            cursor[1] if cursor else "",
            size + 1,
        )
        result = SearchResult(sessions=[SummaryRow(**dict(r.items())) for r in rows[:size]])
        if len(rows) > size:
            last = result.sessions[-1]
            result.next_page_token = _token(last.created_at, last.session_id)
        return result

    # -- retention -----------------------------------------------------------------------------

    async def set_retention(self, tenant_id: str, audio_days: int) -> None:
        await self.pool.execute(
            "INSERT INTO tenant_retention (tenant_id, audio_days) VALUES ($1, $2)"
            " ON CONFLICT (tenant_id) DO UPDATE SET audio_days = $2, updated_at = now()",
            tenant_id,
            audio_days,
        )
