"""The API's authentication: a grpc.aio server interceptor.

Every call but health checking and reflection must carry `authorization: Bearer <key>`. The key
is resolved to a principal once per call (results cached for CACHE_SECONDS, so the hot path
costs a dict lookup), checked against the method's roles, and bound for the handler
(`current_principal()`) together with the store's tenant scope, so every query the call makes is
limited to the caller's tenant by Postgres too.

Missing, malformed, unknown or revoked key: UNAUTHENTICATED. A role the method does not allow:
PERMISSION_DENIED. A revoked key is refused by every process within CACHE_SECONDS; a stream
already open when its key is revoked runs on until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import grpc

from services.auth.keys import KeyRefused, resolve_key
from services.auth.principal import AccessDenied, Principal, Role, bind_principal, require
from services.store.pool import tenant_scope

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
"""How long a key's lookup (valid, unknown or revoked) is reused: the bound on how long a
revoked key still works, and on how stale a new key's refusal can be."""

CACHE_ENTRIES = 10_000
# How long a refused stream waits for the client's first message before answering.
FIRST_MESSAGE_WAIT_S = 2.0

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

SESSIONS = "earpiece.v1.SessionService"
REPLAY = "earpiece.v1.ReplayService"

# Who may call what (admin may call everything). A method of an Earpiece service missing here
# falls back to its service's entry, and a service missing here to admin only.
METHOD_ROLES: dict[str, frozenset[Role]] = {
    f"/{SESSIONS}/StartSession": frozenset({Role.CLIENT}),
    f"/{SESSIONS}/Connect": frozenset({Role.CLIENT}),
    f"/{SESSIONS}/EndSession": frozenset({Role.CLIENT}),
    f"/{SESSIONS}/GetSession": frozenset({Role.CLIENT, Role.ANALYST}),
    f"/{SESSIONS}/ListSessions": frozenset({Role.CLIENT, Role.ANALYST}),
}
SERVICE_ROLES: dict[str, frozenset[Role]] = {
    SESSIONS: frozenset({Role.CLIENT}),
    REPLAY: frozenset({Role.ANALYST}),
}


def roles_for(method: str) -> frozenset[Role]:
    """The roles besides admin that may call `method` ("/package.Service/Method")."""
    if method in METHOD_ROLES:
        return METHOD_ROLES[method]
    service = method.strip("/").split("/", 1)[0]
    return SERVICE_ROLES.get(service, frozenset())


def is_open(method: str) -> bool:
    return method.strip("/").split("/", 1)[0] in OPEN_SERVICES


class Unauthenticated(Exception):
    pass


def bearer_token(metadata: Mapping[str, str | bytes] | None) -> str:
    value = (metadata or {}).get("authorization")
    if value is None:
        raise Unauthenticated(
            "no API key: send the metadata `authorization: Bearer <key>` (create a key with "
            "`earpiece keys create --tenant T --role client`; the embedded default writes a "
            "development key to .earpiece/dev-key)"
        )
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "the authorization metadata must be `Bearer <key>` (the word Bearer, a space, the key)"
        )
    return token.strip()


Lookup = Callable[[str], Awaitable[Principal]]


class KeyCache:
    """Resolves keys through `lookup`, remembering each answer for `ttl` seconds."""

    def __init__(self, lookup: Lookup, *, ttl: float = CACHE_SECONDS) -> None:
        self._lookup = lookup
        self.ttl = ttl
        self._entries: OrderedDict[str, tuple[float, Principal | KeyRefused]] = OrderedDict()

    async def resolve(self, token: str) -> Principal:
        now = time.monotonic()
        entry = self._entries.get(token)
        if entry is None or entry[0] <= now:
            try:
                answer: Principal | KeyRefused = await self._lookup(token)
            except KeyRefused as exc:
                answer = exc
            self._entries[token] = (now + self.ttl, answer)
            self._entries.move_to_end(token)
            while len(self._entries) > CACHE_ENTRIES:
                self._entries.popitem(last=False)
            entry = self._entries[token]
        if isinstance(entry[1], KeyRefused):
            raise entry[1]
        return entry[1]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call against the keys in `pool`'s database."""

    def __init__(self, pool: asyncpg.Pool, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.keys = KeyCache(lambda token: resolve_key(pool, token), ttl=cache_seconds)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or is_open(method):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            principal = await self.keys.resolve(bearer_token(metadata))
            require(principal, *roles_for(method))
        except (Unauthenticated, KeyRefused) as exc:
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except AccessDenied as exc:
            name = method.rsplit(".", 1)[-1]
            return _refusing(handler, grpc.StatusCode.PERMISSION_DENIED, f"{name}: {exc}")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot check an API key: %s: %s", type(exc).__name__, exc)
            return _refusing(
                handler,
                grpc.StatusCode.UNAVAILABLE,
                "cannot check the API key: the database is unreachable; retry shortly",
            )
        return _binding(handler, principal)


def _bind(principal: Principal) -> None:
    # The RPC runs in a task of its own, so these last exactly as long as the call.
    bind_principal(principal)
    tenant_scope.set(principal.scope)


def _wrap(handler: grpc.RpcMethodHandler, make: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """The same kind of handler with its behaviour replaced by make(behaviour)."""
    kinds = {
        (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
        (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
        (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
        (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
    }
    attr, build = kinds[(handler.request_streaming, handler.response_streaming)]
    return build(
        make(getattr(handler, attr)),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _binding(handler: grpc.RpcMethodHandler, principal: Principal) -> grpc.RpcMethodHandler:
    def make(behaviour: Any) -> Any:
        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                _bind(principal)
                async for item in behaviour(request, context):
                    yield item

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _bind(principal)
            return await behaviour(request, context)

        return call

    return _wrap(handler, make)


def _refusing(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if handler.request_streaming:
            # Take the client's first message before refusing. A client whose first write
            # (Connect's attach) meets a status already sent sees that write fail with gRPC's
            # "Internal error from Core", and never this status.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FIRST_MESSAGE_WAIT_S):
                    await anext(aiter(request))
        await context.abort(code, message)

    return _wrap(handler, lambda _: refuse)
