"""The sessions table: one row per conversation, its tenant, configuration and lifecycle.

Unlike the event log this table is updated (a session ends), and every change is idempotent so
that a retried RPC or activity changes nothing the second time."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from services.store.events import SessionRecord, SessionStatus

_COLUMNS = "session_id, tenant_id, status, config, prompt_hash, created_at, ended_at, end_reason"


class SessionIdTaken(Exception):
    """The session id exists, but not for the tenant this call is scoped to (row-level security
    hides the row). Says nothing about whose it is."""


def _record(row: asyncpg.Record, *, created: bool = False) -> SessionRecord:
    return SessionRecord(
        session_id=row["session_id"],
        tenant_id=row["tenant_id"],
        status=row["status"],
        config=json.loads(row["config"]),
        prompt_hash=row["prompt_hash"],
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        created=created,
    )


async def create_session(
    pool: asyncpg.Pool,
    *,
    session_id: str,
    tenant_id: str,
    config: dict[str, Any],
    prompt_hash: str | None,
) -> SessionRecord:
    """Inserts an active session; if the id exists, returns the existing row (created=False)
    so a retried StartSession is harmless. The caller compares tenants if that matters; if the
    row exists but is another tenant's and the connection is scoped to one tenant, it cannot
    be seen at all: SessionIdTaken."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"""
            INSERT INTO sessions (session_id, tenant_id, status, config, prompt_hash)
            VALUES ($1, $2, 'active', $3::jsonb, $4)
            ON CONFLICT (session_id) DO NOTHING
            RETURNING {_COLUMNS}
            """,
            session_id,
            tenant_id,
            json.dumps(config, separators=(",", ":")),
            prompt_hash,
        )
        if row is not None:
            return _record(row, created=True)
        existing = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM sessions WHERE session_id = $1", session_id
        )
    if existing is None:  # sessions are never deleted: hidden by the tenant scope
        raise SessionIdTaken(session_id)
    return _record(existing)


async def get_session(pool: asyncpg.Pool, session_id: str) -> SessionRecord | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM sessions WHERE session_id = $1", session_id)
    return None if row is None else _record(row)


async def list_sessions(
    pool: asyncpg.Pool,
    *,
    tenant_id: str | None,
    status: SessionStatus | None,
    page_size: int,
    after: tuple[datetime, str] | None,
    newest_first: bool = False,
) -> list[SessionRecord]:
    """One page of sessions ordered by (created_at, session_id), oldest first unless
    `newest_first`. Keyset pagination: pass the last record's `cursor` as `after` for the next
    page, so deep pages cost the same as the first and concurrent inserts shift nothing."""
    if page_size <= 0:
        raise ValueError("page_size must be positive")
    conditions: list[str] = []
    args: list[Any] = []
    if tenant_id is not None:
        args.append(tenant_id)
        conditions.append(f"tenant_id = ${len(args)}")
    if status is not None:
        args.append(status)
        conditions.append(f"status = ${len(args)}")
    if after is not None:
        args.extend(after)
        op = "<" if newest_first else ">"
        conditions.append(f"(created_at, session_id) {op} (${len(args) - 1}, ${len(args)})")
    args.append(page_size)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    direction = "DESC" if newest_first else "ASC"
    rows = await pool.fetch(
        f"""
        SELECT {_COLUMNS} FROM sessions {where}
        ORDER BY created_at {direction}, session_id {direction}
        LIMIT ${len(args)}
        """,
        *args,
    )
    return [_record(row) for row in rows]


async def mark_ended(pool: asyncpg.Pool, *, session_id: str, reason: str) -> SessionRecord | None:
    """Ends an active session. Idempotent: ending an ended session returns it unchanged (the
    first reason and time stand). None if there is no such session."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"""
            UPDATE sessions SET status = 'ended', ended_at = now(), end_reason = $2
            WHERE session_id = $1 AND status = 'active'
            RETURNING {_COLUMNS}
            """,
            session_id,
            reason,
        )
        if row is None:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM sessions WHERE session_id = $1", session_id
            )
    return None if row is None else _record(row)
