"""The store's connection pool.

Each new connection switches to the application role when the connecting user may, so that the
grants the role lacks (UPDATE/DELETE/TRUNCATE on session_events) bind the service itself, not only
other users. (Production logs in as that role directly; see services/runtime/postgres.py.)

Each connection taken from the pool is also told whose rows it may see: `earpiece.tenant_id` is
set from `tenant_scope`, which the API's auth layer binds to the caller's tenant for the whole of
an RPC (tasks it starts inherit it), and which is ALL_TENANTS for the service's own work. The
row-level security policies (migrations/004) read it, so a query that forgets its tenant filter
still returns nothing of another tenant's."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

log = logging.getLogger(__name__)

APP_ROLE = "earpiece_app"

WRITER_ROLE = "earpiece_writer"
"""The role the event writers' COPYs run as. Postgres refuses COPY FROM into a table with
row-level security to any role subject to it, so this role bypasses it; it may only SELECT and
INSERT events and audio (no UPDATE, DELETE or TRUNCATE, no other table). The application role
may SET ROLE to it (migrations/004), and to nothing else."""

ALL_TENANTS = "*"
"""The scope of the service's own work (and of admin calls): every tenant's rows."""

tenant_scope: contextvars.ContextVar[str] = contextvars.ContextVar(
    "earpiece_tenant_scope", default=ALL_TENANTS
)


@contextmanager
def scoped_to(tenant_id: str) -> Iterator[None]:
    """Store calls made inside (and by tasks started inside) see only `tenant_id`'s rows."""
    token = tenant_scope.set(tenant_id)
    try:
        yield
    finally:
        tenant_scope.reset(token)


_MAY_SET_ROLE = """
SELECT CASE
    WHEN current_user = $1 THEN false
    WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
        THEN pg_has_role(current_user, $1, 'MEMBER')
    ELSE false
END
"""


async def use_role(conn: asyncpg.Connection, role: str) -> bool:
    """Switches `conn` to `role` if the user is a member (or superuser).

    `SET ROLE` survives the pool's `RESET ALL` on release, so once per connection is enough.
    Returns whether the role is now in effect."""
    if not await conn.fetchval(_MAY_SET_ROLE, role):
        return bool(await conn.fetchval("SELECT current_user = $1", role))
    try:
        await conn.execute(f"SET ROLE {role}")
    except asyncpg.InsufficientPrivilegeError as exc:  # member without the SET option (PG 16+)
        log.warning("cannot SET ROLE %s (%s); using the connecting user's grants", role, exc)
        return False
    return True


async def use_app_role(conn: asyncpg.Connection) -> bool:
    return await use_role(conn, APP_ROLE)


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 10, role: str = APP_ROLE, scoped: bool = True
) -> asyncpg.Pool:
    """An asyncpg pool whose connections run as `role` where possible, each scoped to the
    current `tenant_scope` when acquired.

    `scoped=False` is for the writers' pool: WRITER_ROLE bypasses row-level security, so the
    scope would change nothing, and its `SET` on checkout and the `RESET ALL` on release were
    two of every three commits Postgres saw under load (the writers change no session state)."""

    async def init(conn: asyncpg.Connection) -> None:
        await use_role(conn, role)

    if not scoped:
        return await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, init=init, reset=_keep_state
        )
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=init, setup=_scope_connection
    )
    return pool


async def _keep_state(conn: asyncpg.Connection, /) -> None:
    """No reset on release: nothing on the connection changed."""


async def _scope_connection(conn: asyncpg.pool.PoolConnectionProxy, /) -> None:
    # Session-level, not SET LOCAL: pool calls run outside explicit transactions. The pool's
    # RESET ALL on release clears it again, so a connection never keeps a previous caller's.
    await conn.execute(f"SET earpiece.tenant_id = {_literal(tenant_scope.get())}")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
