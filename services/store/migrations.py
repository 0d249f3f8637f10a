"""Numbered SQL migrations (`migrations/NNN_name.sql`), applied in order, each exactly once.

Every process runs this at start-up, so two of them starting together must not both apply a
file: the whole run holds a Postgres advisory lock, and each file is applied in one transaction
together with its row in `schema_migrations`, so a failed file leaves no trace and is retried
by the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# Resolved from the repository (the project is installed editable); migrations/ is not a package.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

# "earpiece" as a big-endian int64: fixed, so every process contends for the same lock.
LOCK_KEY = int.from_bytes(b"earpiece", "big")

_FILE_NAME = re.compile(r"^(\d{3,})_([A-Za-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str  # the file name without ".sql", e.g. "001_event_store"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    """The migration files in `directory`, in order; refuses unnumbered or duplicate numbers so
    that the order can never be ambiguous."""
    folder = directory or MIGRATIONS_DIR
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name!r} is not named NNN_name.sql")
        found.append(Migration(int(match[1]), path.stem, path.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.number)
    for before, after in itertools.pairwise(found):
        if before.number == after.number:
            raise ValueError(f"two migrations numbered {after.number}: {before.name}, {after.name}")
    return found


async def apply_migrations(url: str, *, directory: Path | None = None) -> list[str]:
    """Applies the migrations not yet applied to the database at `url`; returns their names.

    `directory` defaults to the repository's migrations/ folder (tests point it elsewhere).
    """
    migrations = discover(directory)
    conn: asyncpg.Connection = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
            applied = {row["name"]: row["checksum"] for row in rows}
            for migration in migrations:
                if migration.name in applied:
                    if applied[migration.name] != migration.checksum:
                        log.warning(
                            "migration %s changed after it was applied; it is not re-run "
                            "(add a new numbered file instead)",
                            migration.name,
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        migration.name,
                        migration.checksum,
                    )
                log.info("applied migration %s", migration.name)
                applied_now.append(migration.name)
        finally:
            # Closing the connection releases the lock too; never mask the real error.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
