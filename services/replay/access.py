"""Who may read replays, in one place: every replay RPC asks `replay_caller` and nothing else.

A caller is the API key's principal (key id, tenant, role) that the auth interceptor
(services/auth, issue 10) bound for the RPC, plus where the call came from (the gRPC peer),
which the audit trail records. Replay needs the analyst or admin role; an analyst sees only its
own tenant, and another tenant's session answers NOT_FOUND exactly like a missing one.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

import grpc

from services.auth import AccessDenied, Principal, current_principal

ANALYST = "analyst"
ADMIN = "admin"
ALL_TENANTS = "*"


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    tenant_id: str
    role: str
    peer: str

    @property
    def all_tenants(self) -> bool:
        return self.role == ADMIN

    def may_see(self, tenant_id: str) -> bool:
        return self.all_tenants or self.tenant_id == tenant_id

    def acting_tenant(self, requested: str) -> str:
        """The tenant a search acts for; empty means every tenant (admins only)."""
        if self.all_tenants:
            return requested
        if requested and requested != self.tenant_id:
            raise AccessDenied(
                f"API key {self.key_id} belongs to tenant {self.tenant_id!r} and may read only "
                f"its sessions: leave tenant_id empty or set it to {self.tenant_id!r}"
            )
        return self.tenant_id

    def require(self, *roles: str) -> None:
        if self.role == ADMIN or self.role in roles:
            return
        needed = " or ".join((*roles, ADMIN))
        raise AccessDenied(f"API key {self.key_id} has role {self.role}; this needs {needed}")


def local_caller() -> Caller:
    """The CLI reading the database directly: whoever holds the database's credentials may
    read everything, and the audit trail names the local user and process."""
    return Caller(
        key_id=f"local:{getpass.getuser()}",
        tenant_id=ALL_TENANTS,
        role=ADMIN,
        peer=f"local:{os.uname().nodename}:{os.getpid()}",
    )


def _principal() -> Principal | None:
    """The principal the auth interceptor bound for this RPC, or None without one."""
    try:
        return current_principal()
    except RuntimeError:
        return None


async def replay_caller(context: grpc.aio.ServicerContext, *, admin_only: bool = False) -> Caller:
    """The caller of a replay RPC after the role check; PERMISSION_DENIED otherwise."""
    peer = context.peer() or "unknown"
    principal = _principal()
    if principal is None:
        # A server built without the auth interceptor (services/auth) in front: nothing of it
        # is protected anyway, and the audit trail says who it was: nobody known.
        return Caller("anonymous", ALL_TENANTS, ADMIN, peer)
    caller = Caller(str(principal.key_id), str(principal.tenant_id), str(principal.role), peer)
    try:
        caller.require(*(() if admin_only else (ANALYST,)))
    except AccessDenied as exc:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    return caller
