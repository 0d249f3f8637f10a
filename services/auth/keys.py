"""API keys: `ep_<key_id>_<secret>`, kept in Postgres as (key_id, sha256(secret)).

Why this hash: the secret is 32 random bytes (256 bits), so no one can guess it however fast the
hash is; slow password hashes (bcrypt, argon2) exist for low-entropy human passwords and would
only cost every call milliseconds of CPU. The public key id in front makes the lookup one
primary-key probe, and the comparison is constant-time. The plaintext key is shown once, when it
is created, and never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from services.auth.principal import Principal, Role
from services.gateway.validation import TENANT_ID

PREFIX = "ep"
_KEY = re.compile(r"^ep_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class KeyRefused(Exception):
    """A key that cannot be used; the message says why and what to do (never the secret)."""


class BadKey(KeyRefused):
    pass


class RevokedKey(KeyRefused):
    pass


@dataclass(frozen=True, slots=True)
class NewKey:
    principal: Principal
    token: str  # the whole key, shown once


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    tenant_id: str
    role: Role
    label: str
    created_at: datetime
    revoked_at: datetime | None


def public_id(key_id: str) -> str:
    return f"{PREFIX}_{key_id}"


def new_token() -> tuple[str, str, bytes]:
    """(key_id, the whole key, sha256 of its secret)."""
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return key_id, f"{PREFIX}_{key_id}_{secret}", hashlib.sha256(secret.encode()).digest()


def parse_token(token: str) -> tuple[str, bytes]:
    """(key_id, sha256 of the secret) of a well-formed key; BadKey otherwise."""
    match = _KEY.match(token)
    if match is None:
        raise BadKey(
            "the API key is malformed: expected `ep_<16 hex>_<43 characters>` as printed by "
            "`earpiece keys create` (send it as `authorization: Bearer <key>`)"
        )
    return match[1], hashlib.sha256(match[2].encode()).digest()


def _key_id(value: str) -> str:
    """A key id given as `ep_<id>`, `<id>` or the whole key."""
    match = re.match(r"^(?:ep_)?([0-9a-f]{16})(?:_.*)?$", value)
    if match is None:
        raise BadKey(f"{value[:19]!r} is not a key id; `earpiece keys list` shows them (ep_...)")
    return match[1]


def check_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise BadKey(
            f"unknown role {value!r}; choose one of {', '.join(r.value for r in Role)}"
        ) from None


def check_tenant(value: str) -> str:
    if not TENANT_ID.match(value):
        raise BadKey("a tenant id is 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


async def create_key(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: str, role: Role | str, label: str = ""
) -> NewKey:
    """A new key for `tenant_id` with `role`. Needs INSERT on api_keys (the owner's)."""
    checked = check_role(role) if isinstance(role, str) else role
    check_tenant(tenant_id)
    key_id, token, digest = new_token()
    await conn.execute(
        "INSERT INTO api_keys (key_id, tenant_id, role, secret_sha256, label)"
        " VALUES ($1, $2, $3, $4, $5)",
        key_id,
        tenant_id,
        checked.value,
        digest,
        label,
    )
    return NewKey(Principal(public_id(key_id), tenant_id, checked), token)


async def list_keys(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: str | None = None
) -> list[KeyInfo]:
    rows = await conn.fetch(
        "SELECT key_id, tenant_id, role, label, created_at, revoked_at FROM api_keys"
        " WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY created_at, key_id",
        tenant_id,
    )
    return [_info(r) for r in rows]


async def revoke_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> KeyInfo:
    """Revokes the key (idempotent: a revoked key keeps its first revocation time)."""
    key_id = _key_id(key)
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1"
        " RETURNING key_id, tenant_id, role, label, created_at, revoked_at",
        key_id,
    )
    if row is None:
        raise BadKey(f"no key {public_id(key_id)}; `earpiece keys list` shows them")
    return _info(row)


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        key_id=public_id(row["key_id"]),
        tenant_id=row["tenant_id"],
        role=Role(row["role"]),
        label=row["label"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def resolve_key(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> Principal:
    """The principal of a valid key; BadKey or RevokedKey (messages never hold the secret)."""
    key_id, digest = parse_token(token)
    row = await conn.fetchrow(
        "SELECT tenant_id, role, secret_sha256, revoked_at FROM api_keys WHERE key_id = $1",
        key_id,
    )
    if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), digest):
        raise BadKey(
            f"unknown API key {public_id(key_id)}: check it, or create one with "
            "`earpiece keys create --tenant T --role client`"
        )
    if row["revoked_at"] is not None:
        raise RevokedKey(
            f"API key {public_id(key_id)} was revoked at {row['revoked_at']:%Y-%m-%d %H:%M:%S} "
            "UTC; create a new one with `earpiece keys create`"
        )
    return Principal(public_id(key_id), row["tenant_id"], Role(row["role"]))


DEV_TENANT = "dev"


async def ensure_dev_key(conn: asyncpg.Connection, path: Path) -> str:
    """The embedded default's development key: the one in `path` if it still works, else a new
    admin key of tenant "dev" written there (mode 0600). Returns the key."""
    try:
        token = _read_key(path)
        if (await resolve_key(conn, token)).role == Role.ADMIN:
            return token
    except (OSError, KeyRefused):
        pass
    new = await create_key(
        conn, tenant_id=DEV_TENANT, role=Role.ADMIN, label="development key (embedded default)"
    )
    _write_key(path, new.token)
    return new.token


def _read_key(path: Path) -> str:
    return path.read_text().strip()


def _write_key(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # also when the file existed with wider permissions
        f.write(token + "\n")
