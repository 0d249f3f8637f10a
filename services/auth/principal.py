"""Who is calling: the principal an API key resolves to, and the checks handlers make with it.

The auth interceptor (services/auth/interceptor.py) resolves the caller's key once per call and
binds the principal for the whole of the RPC (tasks it starts inherit it). Handlers ask:

    p = current_principal()
    tenant = acting_tenant(p, request.tenant_id)   # the tenant this call acts for
    if not may_see(p, record.tenant_id): ...       # answer NOT_FOUND, exactly as for no record
    require(p, Role.ANALYST)                       # or refuse with PERMISSION_DENIED

`AccessDenied` carries a message a person can act on; `await deny(context, exc)` turns it into
PERMISSION_DENIED. `await authorize(context, ...)` does the role and tenant checks in one call.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

import grpc

from services.store.pool import ALL_TENANTS


class Role(StrEnum):
    CLIENT = "client"  # product backends: start, connect to, end, get and list its sessions
    ANALYST = "analyst"  # read and replay its tenant's sessions
    ADMIN = "admin"  # everything, for every tenant


ROLE_RIGHTS: dict[Role, str] = {
    Role.CLIENT: "start, connect to, end, get and list its tenant's sessions",
    Role.ANALYST: "get, list, read and replay its tenant's sessions",
    Role.ADMIN: "everything, for every tenant",
}


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str  # the key's public id, "ep_<id>": safe to log and to show
    tenant_id: str
    role: Role

    @property
    def all_tenants(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def scope(self) -> str:
        """The store's tenant scope for this caller's calls (services/store/pool.py)."""
        return ALL_TENANTS if self.all_tenants else self.tenant_id


class AccessDenied(Exception):
    """The caller's key may not do this; the message says what the key is and what is needed."""


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "earpiece_principal", default=None
)


def current_principal() -> Principal:
    """The caller of the RPC being handled. Only inside an RPC behind the auth interceptor."""
    found = _current.get()
    if found is None:
        raise RuntimeError("no principal: not inside an RPC served behind the auth interceptor")
    return found


def bind_principal(principal: Principal) -> None:
    """Makes `principal` the caller for the rest of this task (the interceptor calls this)."""
    _current.set(principal)


def require(principal: Principal, *roles: Role) -> None:
    """Refuses unless the principal has one of `roles` (admin always passes)."""
    if principal.role in roles or principal.role == Role.ADMIN:
        return
    needed = " or ".join(r.value for r in (*roles, Role.ADMIN))
    raise AccessDenied(
        f"API key {principal.key_id} has role {principal.role.value} "
        f"({ROLE_RIGHTS[principal.role]}); this needs {needed}"
    )


def may_see(principal: Principal, tenant_id: str) -> bool:
    """Whether the caller may see a record of `tenant_id`. When not, answer exactly as if the
    record did not exist (NOT_FOUND, same message), so nothing leaks about other tenants."""
    return principal.all_tenants or principal.tenant_id == tenant_id


def acting_tenant(principal: Principal, requested: str) -> str:
    """The tenant a call acts for: the key's own when `requested` is empty; an admin may name
    any tenant, everyone else only their own."""
    if not requested or requested == principal.tenant_id:
        return principal.tenant_id
    if principal.all_tenants:
        return requested
    raise AccessDenied(
        f"API key {principal.key_id} belongs to tenant {principal.tenant_id!r} and may act only "
        f"for it: leave tenant_id empty or set it to {principal.tenant_id!r}"
    )


async def deny(context: grpc.aio.ServicerContext, exc: AccessDenied) -> NoReturn:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    raise AssertionError("unreachable")  # abort raises


async def authorize(
    context: grpc.aio.ServicerContext, *roles: Role, tenant_id: str = ""
) -> tuple[Principal, str]:
    """The caller and the tenant it acts for, after `require(principal, *roles)` (if roles are
    given) and `acting_tenant(principal, tenant_id)`; PERMISSION_DENIED otherwise."""
    principal = current_principal()
    try:
        if roles:
            require(principal, *roles)
        return principal, acting_tenant(principal, tenant_id)
    except AccessDenied as exc:
        await deny(context, exc)
