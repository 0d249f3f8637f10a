"""gRPC status helpers: the right code, a message a person can act on, structured details."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, cast

import asyncpg
import grpc
from asyncpg.exceptions import _base as asyncpg_base
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from services.api.earpiece.v1 import session_pb2 as pb
from services.gateway.validation import InvalidField
from services.store.events import StoreError

log = logging.getLogger(__name__)

# Postgres SQLSTATE classes that mean "the server is not there right now": connection
# exceptions (08), insufficient resources such as too many connections (53), and operator
# intervention: shutting down, starting up, crashed (57).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})


def store_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the event store cannot be reached now (and a retry may succeed)."""
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError)


def _from_well_known_types(exc: BaseException) -> bool:
    """Whether `exc` is a range error raised by protobuf's Timestamp/Duration conversions."""
    if not isinstance(exc, ValueError | OverflowError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith("well_known_types.py")


def unavailable_message(exc: BaseException) -> str:
    return (
        f"the event store (Postgres) is unreachable ({type(exc).__name__}: {exc}); nothing "
        "was recorded for this call. Retry in a few seconds; if this persists, check that "
        "Postgres is running and that DATABASE_URL points at it"
    )


async def abort_for(context: grpc.aio.ServicerContext, exc: Exception, rpc: str) -> NoReturn:
    """The one place an exception escaping an RPC becomes a status: bad input is
    INVALID_ARGUMENT, Postgres or Temporal out of reach is UNAVAILABLE, anything else is a bug,
    logged with its traceback and answered INTERNAL (never the bare UNKNOWN)."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, InvalidField):
        await abort_invalid(context, exc)
    if store_unavailable(exc):
        log.warning("%s: event store unreachable: %s: %s", rpc, type(exc).__name__, exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, clip(unavailable_message(exc)))
    if isinstance(exc, StoreError):
        log.warning("%s: event store writer stopped: %s", rpc, exc)
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            clip(f"the session's event log cannot be written now: {exc}"),
        )
    if isinstance(exc, RPCError) and exc.status in {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }:
        log.warning("%s: Temporal unreachable: %s", rpc, exc)
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            clip(
                f"the workflow service (Temporal) is unreachable ({exc.message}); retry in a "
                "few seconds; if this persists, check TEMPORAL_ADDRESS"
            ),
        )
    if isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError):
        log.warning("%s: the session's workflow did not answer in time", rpc)
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            "the session's workflow did not answer in time; retry in a few seconds",
        )
    if isinstance(exc, asyncpg.DataError | asyncpg_base.DataError):
        # Postgres (or asyncpg encoding a query argument) refused a value from the request: a
        # NUL in text, a number out of range. The request is wrong; say which value.
        log.warning("%s: a request value Postgres refuses: %s: %s", rpc, type(exc).__name__, exc)
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            clip(
                f"a value in the request cannot be used ({exc}); text may not contain NUL "
                "characters and numbers must fit in 64 bits"
            ),
        )
    if _from_well_known_types(exc):
        # A request Timestamp or Duration out of protobuf's range, met by a conversion that
        # no validator checked first: the request is wrong, not the gateway.
        log.warning("%s: unchecked Timestamp/Duration in the request: %s", rpc, exc)
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            clip(f"a Timestamp or Duration in the request is out of range ({exc})"),
        )
    log.exception("%s failed unexpectedly", rpc, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"{rpc} failed inside the gateway ({type(exc).__name__}); this is a bug and it is "
        "logged; retrying may not help",
    )
    raise AssertionError("unreachable")


class Undecodable:
    """Stands in for a request whose bytes are not a valid message (invalid UTF-8 in a string
    field, a truncated field), so the call can say so instead of gRPC's bare INTERNAL."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def invalid(self, what: str) -> InvalidField:
        return InvalidField(what, f"is not a valid protobuf message ({self.problem})")


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or a UnicodeDecodeError from a string field
            return Undecodable(f"{type(exc).__name__}: {exc}")

    return decode


async def _checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    n = 0
    async for request in requests:
        n += 1
        if isinstance(request, Undecodable):
            raise request.invalid(f"stream message {n}")
        yield request


def guard(behaviour: Callable[..., Any], name: str) -> Callable[..., Any]:
    """`behaviour(request, context)` with every exception it lets out turned into a proper
    status by `abort_for`; an undecodable request is INVALID_ARGUMENT."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await abort_invalid(context, request.invalid("request"))
            if hasattr(request, "__aiter__"):
                request = _checked_requests(request)
            inner = cast(AsyncGenerator[Any, None], behaviour(request, context))
            try:
                async for item in inner:
                    yield item
            except Exception as exc:
                await abort_for(context, exc, name)
            finally:
                await inner.aclose()  # its own finally runs now, not at garbage collection

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await abort_invalid(context, request.invalid("request"))
        if hasattr(request, "__aiter__"):
            request = _checked_requests(request)
        try:
            return await behaviour(request, context)
        except Exception as exc:
            await abort_for(context, exc, name)

    return unary


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """The one place every RPC's escaping exception becomes a status (see `abort_for`): put it
    first, so it also covers what later interceptors raise."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        name = method.rsplit("/", 1)[-1]
        attr = ("stream_" if handler.request_streaming else "unary_") + (
            "stream" if handler.response_streaming else "unary"
        )
        # grpc's handlers are named tuples: the same handler, its behaviour and decoder guarded.
        replace: Callable[..., grpc.RpcMethodHandler] = handler._replace  # type: ignore[attr-defined]
        return replace(
            **{attr: guard(getattr(handler, attr), name)},
            request_deserializer=_lenient(handler.request_deserializer),
        )


# A status travels in trailing metadata, which gRPC clients refuse past 8-16 KiB (the call then
# fails RESOURCE_EXHAUSTED, "Stream removed"); messages and details are clipped well under that.
MAX_STATUS_MESSAGE = 1000
MAX_DETAILS_BYTES = 4000
MAX_DESCRIPTION = 300


def clip(text: str, limit: int = MAX_STATUS_MESSAGE) -> str:
    """`text`, shortened to at most `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text)} characters in all)"


async def abort_invalid(context: grpc.aio.ServicerContext, exc: InvalidField) -> NoReturn:
    violation = error_details_pb2.BadRequest.FieldViolation(
        field=clip(exc.field, MAX_DESCRIPTION), description=clip(exc.problem, MAX_DESCRIPTION)
    )
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    await abort_with_details(context, code_pb2.INVALID_ARGUMENT, str(exc), [detail])


async def abort_with_details(
    context: grpc.aio.ServicerContext, code: int, message: str, details: Sequence[any_pb2.Any]
) -> NoReturn:
    kept: list[any_pb2.Any] = []
    size = 0
    for detail in details:  # in order, as many as fit
        size += detail.ByteSize()
        if size > MAX_DETAILS_BYTES:
            break
        kept.append(detail)
    status = status_pb2.Status(code=code, message=clip(message), details=kept)
    # grpc-stubs lacks the aio context's abort_with_status, which grpc.aio has.
    await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]
    raise AssertionError("unreachable")  # abort_with_status raises


def finding_details(findings: Sequence[pb.PromptFinding], *, field: str) -> list[any_pb2.Any]:
    """Lint findings as a BadRequest (for generic clients) plus each PromptFinding itself, as
    many as fit in a status (the first ones: errors come first)."""
    bad = error_details_pb2.BadRequest()
    for f in findings:
        bad.field_violations.add(
            field=field,
            description=clip(f"line {f.line}: {f.rule}: {f.why} Rewrite: {f.rewrite}", 300),
        )
        if bad.ByteSize() > MAX_DETAILS_BYTES // 2:
            del bad.field_violations[-1]
            break
    out = [any_pb2.Any()]
    out[0].Pack(bad)
    for f in findings:
        short = pb.PromptFinding()
        short.CopyFrom(f)
        short.excerpt = clip(f.excerpt, MAX_DESCRIPTION)
        short.why = clip(f.why, MAX_DESCRIPTION)
        short.rewrite = clip(f.rewrite, MAX_DESCRIPTION)
        packed = any_pb2.Any()
        packed.Pack(short)
        out.append(packed)
    return out
