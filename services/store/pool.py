"""The store's connection pool. Each new connection switches to the application role when the
connecting user may, so that the grants the role lacks (UPDATE/DELETE/TRUNCATE on
session_events) bind the service itself, not only other users."""

from __future__ import annotations

import logging

import asyncpg

log = logging.getLogger(__name__)

APP_ROLE = "earpiece_app"

_MAY_SET_ROLE = """
SELECT CASE
    WHEN current_user = $1 THEN false
    WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
        THEN pg_has_role(current_user, $1, 'MEMBER')
    ELSE false
END
"""


async def use_app_role(conn: asyncpg.Connection) -> bool:
    """Switches `conn` to the application role if the user is a member (or superuser).

    `SET ROLE` survives the pool's `RESET ALL` on release, so once per connection is enough.
    Returns whether the role is now in effect."""
    if not await conn.fetchval(_MAY_SET_ROLE, APP_ROLE):
        return bool(await conn.fetchval("SELECT current_user = $1", APP_ROLE))
    try:
        await conn.execute(f"SET ROLE {APP_ROLE}")
    except asyncpg.InsufficientPrivilegeError as exc:  # member without the SET option (PG 16+)
        log.warning("cannot SET ROLE %s (%s); using the connecting user's grants", APP_ROLE, exc)
        return False
    return True


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """An asyncpg pool whose connections run as the application role where possible."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection
    )
    return pool


async def _init_connection(conn: asyncpg.Connection) -> None:
    await use_app_role(conn)
