"""`earpiece keys create|list|revoke`: API keys, managed as the schema's owner
(DATABASE_OWNER_URL, else DATABASE_URL, else the embedded Postgres).

`create` prints the new key once, on stdout alone, so it can be piped into a secret store; it is
never shown again (only sha256 of its secret is kept). `list` shows ids, never secrets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from services.auth.keys import KeyRefused, create_key, list_keys, revoke_key
from services.auth.principal import ROLE_RIGHTS, Role
from services.runtime.config import Settings


@asynccontextmanager
async def owner_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    from services.runtime.postgres import check_reachable, database_url
    from services.store.migrations import apply_migrations

    async with database_url(settings) as url:
        owner = settings.database_owner_url or url
        variable = "DATABASE_OWNER_URL" if settings.database_owner_url else "DATABASE_URL"
        await check_reachable(owner, variable=variable)
        await apply_migrations(owner)
        conn = await asyncpg.connect(owner)
        try:
            yield conn
        finally:
            await conn.close()


async def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    try:
        async with owner_connection(settings) as conn:
            new = await create_key(conn, tenant_id=args.tenant, role=args.role, label=args.label)
    except KeyRefused as exc:
        print(f"earpiece: {exc}", file=sys.stderr)
        return 2
    p = new.principal
    print(new.token, flush=True)
    print(
        f"created {p.key_id}: role {p.role.value} ({ROLE_RIGHTS[p.role]}), tenant {p.tenant_id}. "
        "The key is shown only this once: store it now. Callers send it as the metadata "
        "`authorization: Bearer <key>` (the client library reads EARPIECE_API_KEY).",
        file=sys.stderr,
    )
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async with owner_connection(settings) as conn:
        keys = await list_keys(conn, tenant_id=args.tenant)
    if not keys:
        print("no keys" + (f" for tenant {args.tenant}" if args.tenant else ""))
        return 0
    print(f"{'key id':<20} {'tenant':<24} {'role':<8} {'created (UTC)':<17} {'revoked':<17} label")
    for k in keys:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-"
        print(
            f"{k.key_id:<20} {k.tenant_id:<24} {k.role.value:<8} "
            f"{k.created_at:%Y-%m-%d %H:%M}  {revoked:<17} {k.label}"
        )
    return 0


async def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    try:
        async with owner_connection(settings) as conn:
            info = await revoke_key(conn, args.key)
    except KeyRefused as exc:
        print(f"earpiece: {exc}", file=sys.stderr)
        return 2
    from services.auth.interceptor import CACHE_SECONDS

    print(
        f"revoked {info.key_id} (role {info.role.value}, tenant {info.tenant_id}); every gateway "
        f"refuses it within {CACHE_SECONDS:g} s (streams already open run until they end)"
    )
    return 0


def add_keys_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    verbs = keys.add_subparsers(dest="keys_command", required=True, metavar="VERB")
    create = verbs.add_parser("create", help="a new key; printed once, on stdout")
    create.add_argument("--tenant", required=True, help="the tenant the key belongs to")
    create.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role],
        help="; ".join(f"{r.value}: {ROLE_RIGHTS[r]}" for r in Role),
    )
    create.add_argument("--label", default="", help="a note for `keys list` (who holds it)")
    create.set_defaults(run=cmd_create)
    listing = verbs.add_parser("list", help="key ids, tenants, roles (never the secrets)")
    listing.add_argument("--tenant", default=None)
    listing.set_defaults(run=cmd_list)
    revoke = verbs.add_parser("revoke", help="revoke a key by its id (ep_...)")
    revoke.add_argument("key", help="the key id as `keys list` shows it, or the whole key")
    revoke.set_defaults(run=cmd_revoke)
