"""Migrations: applied in order, each once, safe when several processes start together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from services.store.migrations import MIGRATIONS_DIR, apply_migrations, discover
from tests.store.conftest import scratch_database


async def test_second_run_applies_nothing(pg_url: str) -> None:
    assert await apply_migrations(pg_url) == []
    conn = await asyncpg.connect(pg_url)
    try:
        names = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
    finally:
        await conn.close()
    assert [r["name"] for r in names] == [m.name for m in discover()]


def test_repository_migrations_are_found() -> None:
    names = [m.name for m in discover()]
    assert names[0] == "001_event_store"
    assert MIGRATIONS_DIR.name == "migrations"


async def test_concurrent_runs_do_not_race(pg_url: str) -> None:
    async with scratch_database(pg_url) as url:
        results = await asyncio.gather(*(apply_migrations(url) for _ in range(4)))
        applied = [r for r in results if r]
        assert applied == [[m.name for m in discover()]]
        assert await apply_migrations(url) == []
        conn = await asyncpg.connect(url)
        try:
            count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE tablename = ANY($1::text[])",
                ["sessions", "session_events", "audio_chunks"],
            )
        finally:
            await conn.close()
        assert count == len(discover())
        assert tables == 3


async def test_applied_in_order_each_once(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "002_fill.sql").write_text("INSERT INTO t (v) VALUES ('second');")
    (tmp_path / "001_create.sql").write_text("CREATE TABLE t (n serial, v text);")
    async with scratch_database(pg_url) as url:
        assert await apply_migrations(url, directory=tmp_path) == ["001_create", "002_fill"]
        (tmp_path / "010_more.sql").write_text("INSERT INTO t (v) VALUES ('tenth');")
        assert await apply_migrations(url, directory=tmp_path) == ["010_more"]
        assert await apply_migrations(url, directory=tmp_path) == []
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT v FROM t ORDER BY n")
        finally:
            await conn.close()
        assert [r["v"] for r in rows] == ["second", "tenth"]


async def test_failed_migration_leaves_no_trace(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE ok (n int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (n int); SELECT no_such_function();")
    async with scratch_database(pg_url) as url:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await apply_migrations(url, directory=tmp_path)
        conn = await asyncpg.connect(url)
        try:
            names = await conn.fetch("SELECT name FROM schema_migrations")
            half = await conn.fetchval("SELECT to_regclass('half')")
        finally:
            await conn.close()
        assert [r["name"] for r in names] == ["001_ok"]
        assert half is None  # the failed file's transaction rolled back
        (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (n int);")
        assert await apply_migrations(url, directory=tmp_path) == ["002_bad"]


def test_badly_named_or_duplicate_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "create.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="NNN_name"):
        discover(tmp_path)
    (tmp_path / "create.sql").unlink()
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="two migrations numbered 1"):
        discover(tmp_path)
