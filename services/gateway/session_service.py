"""SessionService: start, connect, end, get and list sessions."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from google.rpc import code_pb2
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from services.api.earpiece.v1 import session_pb2 as pb
from services.api.earpiece.v1 import session_pb2_grpc
from services.auth import AccessDenied, acting_tenant, current_principal, deny, may_see
from services.gateway import validation
from services.gateway.convert import STATUS_NAMES, config_to_dict, session_message
from services.gateway.errors import (
    abort_invalid,
    abort_with_details,
    clip,
    finding_details,
    store_unavailable,
)
from services.gateway.gateway import Gateway
from services.gateway.live_session import LiveSession
from services.prompts import (
    Finding,
    PersonaSpecError,
    PromptError,
    PromptRejected,
    Severity,
    prepare_prompt,
)
from services.store.events import SessionRecord, StoreError, WriterConflict
from services.store.sessions import SessionIdTaken
from workflows.messages import SESSION_TASK_QUEUE, EndRequest, SessionInput
from workflows.search_attributes import STATUS, TENANT
from workflows.session_workflow import SessionWorkflow

log = logging.getLogger(__name__)

MAX_END_REASON = validation.MAX_END_REASON_CHARS

# Prompt compilation and linting run in worker threads, a few at a time, never on the loop
# that carries every live session's audio.
_PROMPT_WORK = asyncio.Semaphore(2)

# A ListSessions page stays well under gRPC's default 4 MiB message limit.
MAX_LIST_BYTES = 3 * 1024 * 1024

# How long a session whose event store is unreachable waits for its workflow to end it before
# the gateway closes the stream itself.
STORE_OUTAGE_END_WAIT = 15.0

# Seconds a stream cut off for not reading gets to end on its own, then to take its status.
NOT_READING_GRACE = 5.0


def finding_message(finding: Finding) -> pb.PromptFinding:
    """A linter finding as the API message."""
    return pb.PromptFinding(
        severity=pb.PromptFinding.SEVERITY_ERROR
        if finding.severity == Severity.ERROR
        else pb.PromptFinding.SEVERITY_WARNING,
        rule=finding.rule,
        line=finding.line,
        excerpt=finding.excerpt,
        why=finding.why,
        rewrite=finding.rewrite,
    )


class SessionService(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, *, gateway: Gateway) -> None:
        self.gw = gateway

    # ---- StartSession ----

    async def StartSession(
        self, request: pb.StartSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartSessionResponse:
        try:  # empty means the key's own tenant; only an admin may name another
            request.tenant_id = acting_tenant(current_principal(), request.tenant_id)
        except AccessDenied as exc:
            await deny(context, exc)
        try:
            validation.validate_start(request, known_tools=self.gw.tools)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        config = request.config
        prompt_field = f"config.{config.WhichOneof('prompt')}"
        try:
            async with _PROMPT_WORK:
                prepared = await asyncio.to_thread(
                    prepare_prompt,
                    persona_yaml=config.persona_yaml if config.HasField("persona_yaml") else None,
                    instructions=config.instructions if config.HasField("instructions") else None,
                    tools=list(config.tools),
                )
        except PersonaSpecError as exc:
            await abort_invalid(context, validation.InvalidField(prompt_field, str(exc)))
        except PromptRejected as exc:
            findings = [finding_message(f) for f in exc.findings]
            errors = [f for f in findings if f.severity == pb.PromptFinding.SEVERITY_ERROR]
            first = errors[0] if errors else findings[0]
            await abort_with_details(
                context,
                code_pb2.INVALID_ARGUMENT,
                f"{prompt_field}: the prompt has {len(errors)} lint error(s); first, line "
                f"{first.line}: {first.rule}: {first.why} Rewrite: {first.rewrite}",
                finding_details(findings, field=prompt_field),
            )
        except PromptError as exc:
            await abort_invalid(context, validation.InvalidField(prompt_field, str(exc)))
        warnings = [finding_message(f) for f in prepared.warnings]
        voice = config.voice or prepared.voice or "marin"
        stored_config = {
            "request": config_to_dict(config),
            "instructions": prepared.instructions,
            "voice": voice,
            "model": config.model or None,
            "tools": list(config.tools),
            "echo_gate": config.echo_gate,
            "idle_timeout_seconds": validation.idle_timeout_seconds(config),
        }
        session_id = request.session_id or str(uuid.uuid4())
        try:
            record = await self.gw.store.create_session(
                session_id=session_id,
                tenant_id=request.tenant_id,
                config=stored_config,
                prompt_hash=prepared.prompt_hash,
            )
        except SessionIdTaken:
            record = None
        if record is None or record.tenant_id != request.tenant_id:
            # Ids are global; say only that this one is taken, never by whom.
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"session_id {session_id!r} is already in use; choose another id (a random "
                "UUID), or leave session_id empty to get one",
            )
        if not record.created:
            if record.status == "active":
                await self._start_workflow(record, context)
            return pb.StartSessionResponse(session=session_message(record), warnings=warnings)

        writer = await self.gw.store.open_writer(session_id)
        try:
            writer.append(
                kind="session.started",
                source="gateway",
                payload={
                    "tenant_id": request.tenant_id,
                    "prompt_hash": prepared.prompt_hash,
                    "persona": prepared.persona_name,
                    "config": stored_config,
                },
            )
            if warnings:
                writer.append(
                    kind="prompt.lint_warnings",
                    source="gateway",
                    payload={"findings": [w.to_dict() for w in prepared.warnings]},
                )
        finally:
            await writer.close()
        await self._start_workflow(record, context)
        return pb.StartSessionResponse(session=session_message(record), warnings=warnings)

    async def _start_workflow(
        self, record: SessionRecord, context: grpc.aio.ServicerContext
    ) -> None:
        try:
            await self.gw.client.start_workflow(
                SessionWorkflow.run,
                SessionInput(
                    session_id=record.session_id,
                    tenant_id=record.tenant_id,
                    idle_timeout_seconds=float(record.config.get("idle_timeout_seconds", 600)),
                    tools=list(record.config.get("tools", [])),
                    lease_seconds=env_seconds("EARPIECE_LEASE_S", 10.0),
                    rotate_after_seconds=env_seconds("EARPIECE_ROTATE_AFTER_S", 55 * 60.0),
                ),
                id=record.session_id,
                task_queue=SESSION_TASK_QUEUE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(TENANT, record.tenant_id),
                        SearchAttributePair(STATUS, "active"),
                    ]
                ),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except RPCError as exc:
            await self.gw.store.mark_ended(session_id=record.session_id, reason="start_failed")
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"could not start the session's workflow ({exc.message}); the session was "
                "closed, retry StartSession",
            )

    # ---- Connect ----

    async def Connect(
        self,
        request_iterator: AsyncIterator[pb.ClientMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ServerMessage]:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        if first.WhichOneof("body") != "attach":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message on Connect must be an attach {session_id}; "
                f"got {first.WhichOneof('body') or 'an empty message'}",
            )
        try:
            client_event_id = validation.validate_client_event_id(first)
            session_id = validation.require_session_id(
                first.attach.session_id, field="attach.session_id"
            )
            producer_time = validation.sent_at(first)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        record = await self.gw.store.get_session(session_id)
        if record is None or not may_see(current_principal(), record.tenant_id):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no session {session_id!r}; start one with StartSession first",
            )
        if record.status != "active":
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {session_id!r} has ended ({record.end_reason or 'ended'}); "
                "start a new session",
            )
        try:
            live = await self.gw.open_live(
                session_id=session_id,
                config=record.config,
                last_seen_seq=first.attach.last_seen_seq,
            )
        except WriterConflict as exc:
            await context.abort(grpc.StatusCode.ABORTED, f"session is held elsewhere: {exc}")
        try:
            seq = live.attach(client_event_id=client_event_id, producer_time=producer_time)
        except BaseException:
            await self._close_quietly(live, "attach_failed")
            raise
        yield pb.ServerMessage(
            seq=seq,
            attached=pb.Attached(
                session=session_message(record), playback_reports_expected=live.pump is not None
            ),
        )
        reader = asyncio.create_task(self._read(live, request_iterator))
        watcher = asyncio.create_task(self._watch(live, context, asyncio.current_task()))
        try:
            while (message := await live.outbound.get()) is not None:
                yield message
            # The stream ends here. Unless the client closed it or the session ended (it was
            # told so already), the client gets a status that says why.
            await asyncio.wait([reader], timeout=1.0)
            ending = reader.result() if reader.done() and not reader.cancelled() else None
            if live.outbound.overflowed.is_set():
                ending = (grpc.StatusCode.RESOURCE_EXHAUSTED, _NOT_READING)
            elif live.writer.overflowed.is_set():
                ending = (grpc.StatusCode.UNAVAILABLE, _store_outage_message(live))
            if ending is not None:
                await context.abort(ending[0], clip(ending[1]))
        finally:
            for task in (reader, watcher):
                task.cancel()
            await asyncio.gather(reader, watcher, return_exceptions=True)
            await self._close_quietly(live, "client_disconnected")
            self.gw.forget(live)

    async def _close_quietly(self, live: LiveSession, reason: str) -> None:
        """Closes the connection; a failure to flush its log now (Postgres unreachable) is
        logged, not raised: the writer keeps what it holds and writes it when it can."""
        try:
            await live.close(reason=reason)
        except Exception as exc:
            log.warning(
                "session %s: closing the connection (%s) failed (%s: %s)%s",
                live.session_id,
                reason,
                type(exc).__name__,
                exc,
                "; the writer keeps what it holds and retries in the background"
                if store_unavailable(exc)
                else "",
            )

    async def _watch(
        self,
        live: LiveSession,
        context: grpc.aio.ServicerContext,
        handler: asyncio.Task[object] | None,
    ) -> None:
        """Ends the stream for what the stream's own loop cannot see while it is blocked on a
        client that does not read: the outbound bound, or an event store outage past the
        writer's buffer."""
        outbound = asyncio.ensure_future(live.outbound.overflowed.wait())
        store = asyncio.ensure_future(live.writer.overflowed.wait())
        closed = asyncio.ensure_future(live.closed.wait())
        try:
            await asyncio.wait({outbound, store, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (outbound, store, closed):
                waiter.cancel()
        if live.outbound.overflowed.is_set():
            log.warning(
                "session %s: the client is not reading; %d bytes or %d messages unsent "
                "passed the bound; disconnecting",
                live.session_id,
                live.outbound.max_bytes,
                live.outbound.max_messages,
            )
            await self._close_quietly(live, "client_not_reading")
            # A handler that is not stuck on the client ends the call itself (and cancels this
            # watcher). One stuck on a client that never reads gets the status queued behind
            # what gRPC already holds for that client, then, after a grace period, cancelled.
            await asyncio.sleep(NOT_READING_GRACE)
            abort = asyncio.ensure_future(
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _NOT_READING)
            )
            await asyncio.wait([abort], timeout=NOT_READING_GRACE)
            if not abort.done() and handler is not None:
                handler.cancel()
            abort.cancel()
            await asyncio.gather(abort, return_exceptions=True)
        elif live.writer.overflowed.is_set() and not live.closed.is_set():
            await self._end_for_store_outage(live)

    async def _end_for_store_outage(self, live: LiveSession) -> None:
        """Postgres has refused writes for longer than the writer's buffer: the session is
        told, and ended through its workflow (or closed here if that cannot be done soon).
        What the writer holds is kept and written when Postgres is back."""
        message = _store_outage_message(live)
        log.error("session %s: %s", live.session_id, message)
        live.send(
            pb.ServerMessage(
                error=pb.Error(
                    code=grpc.StatusCode.UNAVAILABLE.value[0], message=message, fatal=True
                )
            )
        )
        try:
            async with asyncio.timeout(STORE_OUTAGE_END_WAIT):
                await self.gw.workflow(live.session_id).execute_update(
                    SessionWorkflow.end, EndRequest(reason="event_store_unavailable")
                )
        except Exception as exc:
            log.warning(
                "session %s: the workflow did not end the session within %.0fs (%s: %s); "
                "closing the stream here",
                live.session_id,
                STORE_OUTAGE_END_WAIT,
                type(exc).__name__,
                exc,
            )
        await self._close_quietly(live, "event_store_unavailable")

    async def _read(
        self, live: LiveSession, request_iterator: AsyncIterator[pb.ClientMessage]
    ) -> tuple[grpc.StatusCode, str] | None:
        """Hands each client message to the session. Never ends silently: when it must stop
        the stream it says why, as a fatal Error and as the status it returns for the call
        (None: the client closed its side, or the session ended and the client was told)."""
        try:
            async for message in request_iterator:
                if live.closed.is_set():
                    break
                await live.handle(message)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            raise
        except WriterConflict as exc:
            log.error("session %s: %s", live.session_id, exc)
            return self._fatal(
                live, grpc.StatusCode.ABORTED, f"another process is writing this session: {exc}"
            )
        except validation.InvalidField as exc:  # bytes that are not a ClientMessage at all
            log.warning("session %s: undecodable message: %s", live.session_id, exc)
            return self._fatal(live, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreError as exc:
            if live.closed.is_set():
                return None  # the connection closed under this message; the client was told
            log.error("session %s: the event log cannot be written: %s", live.session_id, exc)
            return self._fatal(
                live,
                grpc.StatusCode.UNAVAILABLE,
                f"this session's event log cannot be written ({exc}); re-attach to go on",
            )
        except Exception as exc:
            if store_unavailable(exc):
                log.warning("session %s: event store unreachable: %s", live.session_id, exc)
                return self._fatal(
                    live,
                    grpc.StatusCode.UNAVAILABLE,
                    f"the event store is unreachable ({type(exc).__name__}); re-attach in a "
                    "few seconds",
                )
            log.exception("session %s: the stream's reader failed", live.session_id)
            return self._fatal(
                live,
                grpc.StatusCode.INTERNAL,
                f"the gateway failed reading this stream ({type(exc).__name__}); the failure "
                "is logged; re-attach to go on",
            )
        await self._close_quietly(live, "client_closed")
        return None

    @staticmethod
    def _fatal(
        live: LiveSession, code: grpc.StatusCode, message: str
    ) -> tuple[grpc.StatusCode, str]:
        live.outbound.put_nowait(
            pb.ServerMessage(error=pb.Error(code=code.value[0], message=message, fatal=True))
        )
        live.outbound.put_nowait(None)
        return code, message

    # ---- EndSession, GetSession, ListSessions ----

    async def EndSession(
        self, request: pb.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndSessionResponse:
        record = await self._existing(request.session_id, context)
        try:
            validation.validate_end_reason(request.reason)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        if record.status == "active":
            reason = request.reason or "ended_by_client"
            try:
                await self.gw.workflow(record.session_id).execute_update(
                    SessionWorkflow.end, EndRequest(reason=reason)
                )
            except (RPCError, WorkflowUpdateFailedError) as exc:
                if isinstance(exc, RPCError) and exc.status != RPCStatusCode.NOT_FOUND:
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        f"could not reach the session's workflow ({exc}); retry EndSession",
                    )
                # No running workflow (it already ended or never started): record it here.
                await self.gw.store.mark_ended(session_id=record.session_id, reason=reason)
            record = await self._existing(request.session_id, context)
        return pb.EndSessionResponse(session=session_message(record))

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Session:
        return session_message(await self._existing(request.session_id, context))

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        principal = current_principal()
        try:  # a client or analyst lists its own tenant; an admin all, or the one it names
            tenant = acting_tenant(principal, request.tenant_id)
        except AccessDenied as exc:
            await deny(context, exc)
        try:
            page_size = validation.validate_page_size(request.page_size)
            after = decode_page_token(request.page_token)
            if request.tenant_id and not validation.TENANT_ID.match(request.tenant_id):
                raise validation.InvalidField("tenant_id", "is not a valid tenant id")
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        records = await self.gw.store.list_sessions(
            tenant_id=None if principal.all_tenants and not request.tenant_id else tenant,
            status=STATUS_NAMES.get(request.status),
            page_size=page_size + 1,
            after=after,
        )
        more = len(records) > page_size
        records = records[:page_size]
        # Fewer than page_size when the page would pass MAX_LIST_BYTES (sessions carry their
        # prompts); always at least one, so paging moves on.
        messages: list[pb.Session] = []
        size = 0
        for record in records:
            message = session_message(record)
            size += message.ByteSize() + 8
            if messages and size > MAX_LIST_BYTES:
                more = True
                break
            messages.append(message)
        records = records[: len(messages)]
        token = encode_page_token(records[-1]) if more and records else ""
        return pb.ListSessionsResponse(sessions=messages, next_page_token=token)

    async def _existing(self, session_id: str, context: grpc.aio.ServicerContext) -> SessionRecord:
        try:
            validation.require_session_id(session_id)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        record = await self.gw.store.get_session(session_id)
        if record is None or not may_see(current_principal(), record.tenant_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no session {session_id!r}")
        return record


_NOT_READING = (
    "the client stopped reading this stream, and what it had not read passed the gateway's "
    "bound (EARPIECE_OUTBOUND_MAX_BYTES / EARPIECE_OUTBOUND_MAX_MESSAGES); read the stream "
    "continuously, then re-attach"
)


def _store_outage_message(live: LiveSession) -> str:
    return (
        f"the event store (Postgres) has been unreachable for {live.writer.failing_for:.0f}s, "
        f"longer than this session may buffer ({live.writer.buffer_seconds:.0f}s), so the "
        f"session has ended; the {live.writer.pending_events} events accepted meanwhile are "
        "kept and written when it is back. Start a new session once Postgres is reachable"
    )


def env_seconds(name: str, default: float) -> float:
    """A bound in seconds from the environment: EARPIECE_LEASE_S (the holder lease, default
    10) and EARPIECE_ROTATE_AFTER_S (model-link rotation, default 3300: the first turn boundary
    after 55 minutes)."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def encode_page_token(record: SessionRecord) -> str:
    raw = json.dumps({"c": record.created_at.isoformat(), "s": record.session_id})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(data["c"]), str(data["s"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise validation.InvalidField(
            "page_token", "is not a token from a previous ListSessions response"
        ) from exc
