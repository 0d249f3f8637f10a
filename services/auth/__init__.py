"""Authentication and authorisation: API keys per tenant with a role, the gRPC interceptor that
resolves them, and the checks handlers make (`current_principal`, `require`, `may_see`,
`acting_tenant`, `authorize`)."""

from services.auth.interceptor import CACHE_SECONDS, AuthInterceptor, roles_for
from services.auth.keys import BadKey, KeyInfo, KeyRefused, NewKey, RevokedKey
from services.auth.principal import (
    AccessDenied,
    Principal,
    Role,
    acting_tenant,
    authorize,
    current_principal,
    deny,
    may_see,
    require,
)

__all__ = [
    "CACHE_SECONDS",
    "AccessDenied",
    "AuthInterceptor",
    "BadKey",
    "KeyInfo",
    "KeyRefused",
    "NewKey",
    "Principal",
    "RevokedKey",
    "Role",
    "acting_tenant",
    "authorize",
    "current_principal",
    "deny",
    "may_see",
    "require",
    "roles_for",
]
