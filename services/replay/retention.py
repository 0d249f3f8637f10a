"""Audio retention: stored audio of sessions past their tenant's retention is deleted by the
`purge_expired_audio` function, which runs as the `earpiece_purger` role (migrations/003 and
005: it may read which sessions are due, delete audio chunks and record the purge, and nothing
else; it has no grant on the event log at all). The application may call the function and so
purge only what the rules say is due.

Each purge is recorded in `audio_purges` (which session, stream, byte range, how much, which
run); the events that pointed at the audio stay, so export and the viewer show the audio as
purged instead of pretending the session was silent.

Run by the `AudioRetention` Temporal Schedule (workflows/retention.py), or
`earpiece retention run`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

PURGER_ROLE = "earpiece_purger"
_PURGE = "SELECT session_id, stream, chunks, bytes FROM purge_expired_audio($1, $2)"


@dataclass
class PurgeReport:
    sessions: list[str] = field(default_factory=list)
    chunks: int = 0
    bytes: int = 0


async def purge_expired_audio(
    target: str | asyncpg.Pool, *, run_id: str, batch: int = 100
) -> PurgeReport:
    """Purges every session's audio past retention, `batch` sessions per transaction, through
    the purger's function (migrations/005). `target` is a database URL or a pool."""
    if isinstance(target, str):
        conn = await asyncpg.connect(target)
        try:
            return await _purge(conn, run_id, batch)
        finally:
            await conn.close()
    async with target.acquire() as pooled:
        return await _purge(pooled, run_id, batch)


async def _purge(conn: Any, run_id: str, batch: int) -> PurgeReport:
    report = PurgeReport()
    while True:
        rows = await conn.fetch(_PURGE, run_id, batch)
        sessions = {row["session_id"] for row in rows}
        for row in rows:
            report.chunks += row["chunks"]
            report.bytes += row["bytes"]
            log.info(
                "purged %d bytes of %s audio of session %s",
                row["bytes"],
                row["stream"],
                row["session_id"],
            )
        report.sessions.extend(sorted(sessions))
        if len(sessions) < batch:
            return report
