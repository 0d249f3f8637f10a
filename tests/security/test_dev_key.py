"""The embedded default's development key: written once, mode 0600, reused while it works."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncpg

from services.auth import Role
from services.auth.keys import DEV_TENANT, ensure_dev_key, resolve_key, revoke_key


async def test_the_dev_key_is_private_reused_and_replaced_when_revoked(
    pg_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "dev-key"
    conn = await asyncpg.connect(pg_url)
    try:
        first = await ensure_dev_key(conn, path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == first
        principal = await resolve_key(conn, first)
        assert (principal.role, principal.tenant_id) == (Role.ADMIN, DEV_TENANT)

        assert await ensure_dev_key(conn, path) == first  # a second start reuses it

        await revoke_key(conn, first)
        path.chmod(0o644)
        second = await ensure_dev_key(conn, path)
        assert second != first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (await resolve_key(conn, second)).role == Role.ADMIN
    finally:
        await conn.close()
