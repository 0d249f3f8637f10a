"""One attached Connect stream: the session's data plane inside this gateway process.

Every client message is validated, deduplicated by its client event id, appended to the event log
(never waiting for the flush), and acknowledged; a bad message gets an error of its own and the
stream goes on. Coarse events go to the workflow through WorkflowSignals.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import datetime

import grpc

from services.api.earpiece.v1 import session_pb2 as pb
from services.gateway import validation
from services.gateway.errors import store_unavailable
from services.gateway.model_pump import ModelPump
from services.gateway.outbound import OutboundQueue
from services.gateway.signals import WorkflowSignals
from services.realtime.link import ModelLinkClosed
from services.store.events import StoreError
from services.store.writer import SessionWriter
from workflows.messages import GatewayEvent, GatewayEventKind

log = logging.getLogger(__name__)


class LiveSession:
    def __init__(
        self,
        *,
        session_id: str,
        connection_id: str,
        gateway_queue: str,
        writer: SessionWriter,
        signals: WorkflowSignals,
        pump: ModelPump | None = None,
        echo_gate: bool = False,
    ) -> None:
        self.session_id = session_id
        self.connection_id = connection_id
        self.gateway_queue = gateway_queue
        self.writer = writer
        self.signals = signals
        self.pump = pump
        self.echo_gate = echo_gate
        # What the client receives; None ends the stream. Bounded: see OutboundQueue.
        self.outbound = OutboundQueue()
        self.closed = asyncio.Event()
        self._screen_hash: str | None = None
        self._closing: asyncio.Future[None] | None = None

    # ---- lifecycle ----

    def attach(self, *, client_event_id: str, producer_time: datetime | None) -> int:
        seq = self.writer.append(
            kind="client.attach",
            source="client",
            payload={"connection_id": self.connection_id, "gateway_queue": self.gateway_queue},
            client_event_id=client_event_id,
            producer_time=producer_time,
        )
        self.signals.send(
            GatewayEvent(
                kind=GatewayEventKind.ATTACHED,
                seq=seq,
                connection_id=self.connection_id,
                gateway_queue=self.gateway_queue,
            )
        )
        return seq

    async def close(self, *, reason: str, ended: bool = False, notify: str | None = None) -> None:
        """Records the end of this connection (and of the session if `ended`), flushes the log,
        tells the workflow, and ends the client's stream. Every caller, the first or a racing
        later one, returns only once the writer is closed, so a re-attach never finds it open."""
        if self._closing is None:
            self.closed.set()
            self._closing = asyncio.ensure_future(self._close(reason, ended, notify))
        await asyncio.shield(self._closing)

    async def _close(self, reason: str, ended: bool, notify: str | None) -> None:
        counts: dict[str, str] = {}
        if self.pump is not None:
            await self.pump.close(session_ending=ended)
            counts = self.pump.counts()
        seq = self.writer.append(
            kind="session.ended" if ended else "client.detached",
            source="gateway",
            payload={"reason": reason, "connection_id": self.connection_id},
        )
        if notify is not None:
            self.outbound.put_nowait(
                pb.ServerMessage(
                    seq=seq,
                    state=pb.SessionState(state=pb.SessionState.STATE_ENDED, detail=notify),
                )
            )
        try:
            await self.writer.close()
        finally:
            if not ended:
                self.signals.send(
                    GatewayEvent(
                        kind=GatewayEventKind.DETACHED,
                        seq=seq,
                        connection_id=self.connection_id,
                        detail=counts,
                    )
                )
            await self.signals.close()
            self.outbound.put_nowait(None)

    # ---- client messages ----

    async def handle(self, message: pb.ClientMessage) -> None:
        """Records one client message. Never raises for bad input: answers with an Error. An
        unexpected failure is logged with the session id and answered with an Error for that
        message; the stream goes on. Only a stopped writer (StoreError) is raised, since the
        stream cannot go on without its log."""
        body = message.WhichOneof("body")
        try:
            await self._handle(message, body)
        except StoreError:
            raise
        except Exception as exc:
            if store_unavailable(exc):
                log.warning(
                    "session %s: message %r not recorded, event store unreachable: %s",
                    self.session_id,
                    message.client_event_id,
                    exc,
                )
                code, text = (
                    grpc.StatusCode.UNAVAILABLE,
                    (
                        "the event store is unreachable, so this message was not recorded; "
                        "send it again in a few seconds (same client_event_id)"
                    ),
                )
            else:
                log.exception(
                    "session %s: handling client message %r (%s) failed",
                    self.session_id,
                    message.client_event_id,
                    body,
                )
                code, text = (
                    grpc.StatusCode.INTERNAL,
                    (
                        f"this {body or 'empty'} message could not be handled "
                        f"({type(exc).__name__}); the failure is logged; the stream goes on"
                    ),
                )
            self._send(
                pb.ServerMessage(
                    error=pb.Error(
                        code=code.value[0], message=text, client_event_id=message.client_event_id
                    )
                )
            )

    async def _handle(self, message: pb.ClientMessage, body: str | None) -> None:
        try:
            client_event_id = validation.validate_client_event_id(message)
            producer_time = validation.sent_at(message)
        except validation.InvalidField as exc:
            self._reject(message, body, exc)
            return
        if await self.writer.is_duplicate(client_event_id):
            self._send(
                pb.ServerMessage(ack=pb.Ack(client_event_id=client_event_id, duplicate=True))
            )
            return
        try:
            match body:
                case "audio":
                    await self._on_audio(message, client_event_id, producer_time)
                case "screen_state":
                    self._on_screen_state(message, client_event_id, producer_time)
                case "text":
                    await self._on_text(message, client_event_id, producer_time)
                case "playback":
                    self._on_playback(message, client_event_id, producer_time)
                case "attach":
                    raise validation.InvalidField(
                        "attach", "this stream is already attached; open a new stream to re-attach"
                    )
                case _:
                    raise validation.InvalidField(
                        "body", "set one of audio, screen_state, text or playback"
                    )
        except validation.InvalidField as exc:
            self._reject(message, body, exc)
        except ModelLinkClosed:
            # The message is already recorded; the pump records the loss and tells the client.
            # A send racing the drop must not end the stream's reader.
            pass

    async def _on_audio(self, m: pb.ClientMessage, cid: str, at: datetime | None) -> None:
        pcm = validation.validate_audio(m.audio)
        # The echo gate (a per-session choice, for clients without echo cancellation): while
        # assistant audio plays, the mic hears it, so the frame is kept but not sent on.
        gated = self.echo_gate and self.pump is not None and self.pump.assistant_playing
        seq = self.writer.append_audio(
            stream="input",
            pcm=pcm,
            kind="client.audio",
            source="client",
            payload={"echo_gated": True} if gated else {},
            client_event_id=cid,
            producer_time=at,
        )
        if self.pump is not None and not gated:
            # The bytes are stored once; the model-bound event refers to the client's event.
            self.pump.forward_audio(pcm, event_seq=seq)

    def _on_screen_state(self, m: pb.ClientMessage, cid: str, at: datetime | None) -> None:
        state = validation.validate_screen_state(m.screen_state)
        canonical = json.dumps(state, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        seq = self.writer.append(
            kind="client.screen_state",
            source="client",
            payload={"state": state, "hash": digest},
            client_event_id=cid,
            producer_time=at,
        )
        self._ack(cid, seq)
        if digest != self._screen_hash:
            self._screen_hash = digest
            if self.pump is not None:
                self.pump.screen_changed(state, digest)

    async def _on_text(self, m: pb.ClientMessage, cid: str, at: datetime | None) -> None:
        text = validation.validate_text(m.text)
        seq = self.writer.append(
            kind="client.text",
            source="client",
            payload={"text": text},
            client_event_id=cid,
            producer_time=at,
        )
        self._ack(cid, seq)
        if self.pump is not None:
            # With no link right now it still counts: the rebuilt conversation includes it.
            self.pump.user_text(text)

    def _on_playback(self, m: pb.ClientMessage, cid: str, at: datetime | None) -> None:
        report = validation.validate_playback(m.playback)
        seq = self.writer.append(
            kind="client.playback",
            source="client",
            payload={
                "response_id": report.response_id,
                "played_ms": report.played_ms,
                "finished": report.finished,
            },
            client_event_id=cid,
            producer_time=at,
        )
        self._ack(cid, seq)
        if self.pump is not None:
            self.pump.playback(
                response_id=report.response_id,
                played_ms=report.played_ms,
                finished=report.finished,
            )

    # ---- replies ----

    def send(self, message: pb.ServerMessage) -> None:
        self._send(message)

    def _send(self, message: pb.ServerMessage) -> None:
        if not self.closed.is_set():
            # The durable watermark rides on every message: what the client may forget.
            message.durable_seq = self.writer.durable_seq
            self.outbound.put_nowait(message)

    def _ack(self, client_event_id: str, seq: int) -> None:
        self._send(pb.ServerMessage(seq=seq, ack=pb.Ack(client_event_id=client_event_id)))

    def _reject(self, m: pb.ClientMessage, body: str | None, exc: validation.InvalidField) -> None:
        # The rejection is part of the audit trail; the rejected bytes are not kept.
        seq = self.writer.append(
            kind="gateway.message_rejected",
            source="gateway",
            payload={
                "client_event_id": m.client_event_id,
                "body": body,
                "field": exc.field,
                "problem": exc.problem,
            },
        )
        self._send(
            pb.ServerMessage(
                seq=seq,
                error=pb.Error(
                    code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    message=str(exc),
                    client_event_id=m.client_event_id,
                ),
            )
        )
