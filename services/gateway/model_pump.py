"""The model side of a live session: the I/O shell around the turn machine (`turns.py`).

Audio and every model event flow through here without touching Temporal. Each event is appended
to the log exactly as sent or received (audio moved into the audio chunks and replaced by a
reference), then handed to the machine with the time; the machine's commands are carried out in
order: decisions appended, client events sent (in one queue, so the wire keeps their order),
messages to the client, one coarse signal per settled response with calls.

The link is disposable: when it drops or the model ends it (`session_expired`), or when the
workflow rotates it before the model's cap, the same `_open_link` path makes a new one and
rebuilds the conversation from the event log (`rebuild.py`), and the machine goes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import grpc

from services.api.earpiece.v1 import session_pb2 as pb
from services.gateway import turns
from services.gateway.rebuild import RebuildPlan
from services.realtime.link import APPEND_PREFIX, ModelLink, ModelLinkClosed, classify_error
from services.store.events import StoreError
from services.store.writer import CHUNK_MAX_AGE, SessionWriter
from workflows.messages import SettleRequest, ToolOutput

log = logging.getLogger(__name__)

FORWARDED_KIND = "model.client.input_audio_buffer.append"
"""The row that records a run of microphone frames sent to the model (see `_record_run`)."""
FORWARDED_ID_PREFIX = "evt_in_"
"""A forwarded frame's event id is this and the seq of the `client.audio` event holding it."""
RUN_FRAMES = 50
RUN_MAX_AGE_S = CHUNK_MAX_AGE
"""A run is recorded after this long at most: a crash loses as much of the forwarding record
as of the audio itself."""
REBUILD_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)

TOOL_STATES = {
    "requested": pb.ToolStatus.STATE_REQUESTED,
    "held": pb.ToolStatus.STATE_HELD,
    "running": pb.ToolStatus.STATE_RUNNING,
    "succeeded": pb.ToolStatus.STATE_SUCCEEDED,
    "failed": pb.ToolStatus.STATE_FAILED,
    "dropped": pb.ToolStatus.STATE_DROPPED,
}


class ForwardedFrame(NamedTuple):
    """One `input_audio_buffer.append` as sent: its event id, the seq of the `client.audio`
    event whose audio it carried, and when it went on the wire (Unix microseconds)."""

    event_id: str
    event_seq: int | None
    sent_at_us: int


def run_payload(event_ids: list[str], sent_at_us: list[int]) -> dict[str, Any]:
    """The payload of one FORWARDED_KIND row: a run of appends in wire order."""
    return {"type": "input_audio_buffer.append", "event_ids": event_ids, "sent_at_us": sent_at_us}


def forwarded_frames(payload: dict[str, Any]) -> list[ForwardedFrame]:
    """The appends one FORWARDED_KIND row records, in wire order (what replay expands)."""
    cut = len(FORWARDED_ID_PREFIX)
    return [
        ForwardedFrame(
            event_id, int(event_id[cut:]) if event_id[:cut] == FORWARDED_ID_PREFIX else None, sent
        )
        for event_id, sent in zip(payload["event_ids"], payload["sent_at_us"], strict=True)
    ]


class _Forward(NamedTuple):
    """A microphone frame for the model, queued in the outbox with the other sends."""

    pcm: bytes
    event_id: str


LinkMaker = Callable[[Callable[[str], None]], ModelLink]
PlanLoader = Callable[[], Awaitable[RebuildPlan]]


class ModelPump:
    def __init__(
        self,
        *,
        make_link: LinkMaker,
        load_plan: PlanLoader,
        writer: SessionWriter,
        send_to_client: Callable[[pb.ServerMessage], None],
        settle: Callable[[SettleRequest], None],
        connection_id: str,
        config: dict[str, Any],
        tool_definitions: list[dict[str, Any]],
        turn_config: turns.TurnConfig | None = None,
    ) -> None:
        """`make_link(on_send)` makes an unconnected link; `load_plan()` reads the log and says
        what a new link's conversation must hold."""
        self._make_link = make_link
        self._load_plan = load_plan
        self.writer = writer
        self._send_to_client = send_to_client
        self._settle = settle
        self._connection_id = connection_id
        self._config = config
        self._tools = tool_definitions
        self.machine = turns.TurnMachine(config=turn_config)
        self.link: ModelLink | None = None
        self._generation = 0
        self._outbox: asyncio.Queue[tuple[int, dict[str, Any] | _Forward] | None] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._tick_at: float | None = None
        self._run_ids: list[str] = []
        self._run_sent_us: list[int] = []
        self._run_timer: asyncio.TimerHandle | None = None
        self._last_seq = 0
        self._closing = False
        self.rebuilds = 0

    # ---- lifecycle ----

    async def start(self) -> None:
        """Opens the first link (raises ModelLinkClosed if the model cannot be reached)."""
        self._sender = asyncio.create_task(self._send_loop(), name="model-sender")
        await self._open_link(cause="attach")

    async def close(self, *, session_ending: bool = False) -> None:
        """The client's stream ended: what it was playing is settled, then the link goes."""
        if self._closing:
            return
        self._feed(turns.Detached("stream closed", session_ending=session_ending))
        self._closing = True
        if self._tick is not None:
            self._tick.cancel()
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        self._outbox.put_nowait(None)
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        if self.link is not None:
            await self.link.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._record_run()

    @property
    def assistant_playing(self) -> bool:
        return self.machine.assistant_playing

    @property
    def link_up(self) -> bool:
        return self.machine.link_up

    def counts(self) -> dict[str, str]:
        """Turns and responses not yet told to the workflow (for the detach signal)."""
        turns, responses = self.machine.take_counts()
        return {"turns": str(turns), "responses": str(responses)}

    # ---- the link: one path for every cause ----

    async def _open_link(self, *, cause: str) -> None:
        """A new link with the conversation rebuilt from the log: the first link of a stream, a
        re-attach, a link drop, `session_expired` or a rotation all come through here."""
        started = time.monotonic()
        await self.writer.flush()  # the plan reads the log, so everything appended must be in it
        plan = await self._load_plan()
        link = self._make_link(self.record_sent)
        await link.connect()
        self._generation += 1
        self.link = link
        self._reader = asyncio.create_task(self._read(link, self._generation), name="model-pump")
        await link.configure(
            instructions=str(self._config.get("instructions", "")),
            voice=str(self._config.get("voice") or "marin"),
            tools=self._tools,
        )
        for event in plan.events():
            await link.send(event)
        if plan.items or cause != "attach":
            self._last_seq = self.writer.append(
                kind="model.link_rebuilt",
                source="gateway",
                payload={
                    "cause": cause,
                    "items_replayed": len(plan.items),
                    "items_dropped": plan.dropped,
                    "tokens_estimated": plan.tokens,
                    "held_calls": sorted(plan.open_calls),
                    "took_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            self.rebuilds += 1
        self._feed(
            turns.LinkUp(
                closed_calls=frozenset(plan.closed_calls),
                recorded_outcomes=frozenset(plan.recorded_outcomes),
                context_digest=plan.context_digest,
                context_item_id=plan.context_item_id,
            )
        )
        # Calls an earlier connection or process left held, that this one never saw: their
        # speech is long over, so they are settled now (the workflow answers a call it already
        # decided with the outcome it has, and never runs one twice).
        known = self.machine.known_calls()
        orphans = [c for c in plan.held_calls() if c.call_id not in known]
        if orphans:
            self._settle(
                SettleRequest(
                    connection_id=self._connection_id,
                    response_id=orphans[0].response_id,
                    interrupted=False,
                    decided_by="earlier_holder",
                    calls=orphans,
                )
            )

    async def rotate(self) -> None:
        """Proactive rotation before the model's cap: at the next turn boundary, a new link."""
        while not self._at_turn_boundary():
            await asyncio.sleep(0.1)
        await self._replace_link(cause="rotation")

    def _at_turn_boundary(self) -> bool:
        m = self.machine
        return (
            m.link_up
            and m.active is None
            and not m.user_floor
            and not m.assistant_playing
            and not m.open_calls()
        )

    async def _replace_link(self, *, cause: str) -> None:
        old = self.link
        self._generation += 1  # anything queued for the old link is not sent
        self._lose_link(cause, cause=cause)
        if old is not None:
            await old.close()
        try:
            await self._open_link(cause=cause)
        except ModelLinkClosed as exc:
            self._link_lost(exc.reason, cause=cause)  # rebuilt with backoff, as after a drop
            return
        self._state(pb.SessionState.STATE_MODEL_LINK_RESTORED, cause, self._last_seq)

    def _link_lost(self, reason: str, *, cause: str) -> None:
        """The link dropped or the model ended it: tell the client, rebuild in place."""
        self._lose_link(reason, cause=cause)
        if not self._closing and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.create_task(self._recover(cause), name="model-recover")

    def _lose_link(self, reason: str, *, cause: str) -> None:
        """Whatever the cause: recorded, the machine told, the client told."""
        self._record_run()
        self._last_seq = seq = self.writer.append(
            kind="model.link_lost", source="gateway", payload={"reason": reason, "cause": cause}
        )
        self._feed(turns.LinkDown(reason))
        self._state(pb.SessionState.STATE_MODEL_LINK_LOST, reason, seq)

    async def _recover(self, cause: str) -> None:
        for attempt, delay in enumerate((0.0, *REBUILD_BACKOFF_S)):
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                if self.link is not None:
                    await self.link.close()
                await self._open_link(cause=cause)
            except ModelLinkClosed as exc:
                log.warning("rebuild attempt %d failed: %s", attempt + 1, exc)
                continue
            self._state(pb.SessionState.STATE_MODEL_LINK_RESTORED, cause, self._last_seq)
            return
        self._state(
            pb.SessionState.STATE_MODEL_LINK_LOST,
            "could not reach the Realtime model again; re-attach to try once more",
            self._last_seq,
        )

    def _state(self, state: pb.SessionState.State.ValueType, detail: str, seq: int) -> None:
        self._send_to_client(
            pb.ServerMessage(seq=seq, state=pb.SessionState(state=state, detail=detail))
        )

    # ---- sending, in one queue so the wire keeps the machine's order ----

    def _queue(self, event: dict[str, Any] | _Forward) -> None:
        self._outbox.put_nowait((self._generation, event))

    async def _send_loop(self) -> None:
        while (entry := await self._outbox.get()) is not None:
            generation, event = entry
            link = self.link
            if generation != self._generation or link is None or not self.machine.link_up:
                continue  # meant for a link that is gone; the rebuild covers it
            with contextlib.suppress(ModelLinkClosed):  # the reader sees the drop, records it
                if isinstance(event, _Forward):
                    await link.append_audio(event.pcm, event_id=event.event_id)
                else:
                    await link.send(event)

    def record_sent(self, text: str) -> None:
        """Called by the link under its send lock, so the log has the wire's order.

        Microphone frames (50 a second) are not logged one row each: their audio is already in
        the `client.audio` event each names, so what sending adds is the event id and the time.
        A run of them becomes one row, written before the next other event sent (and within
        RUN_MAX_AGE_S), so the model-bound events still read back in wire order."""
        if text.startswith(APPEND_PREFIX):
            # The link formats appends with the id last: find it without decoding the audio.
            event_id = text[text.rindex('"event_id":"') + 12 : -2]
            if not self._run_ids:
                loop = asyncio.get_running_loop()
                self._run_timer = loop.call_later(RUN_MAX_AGE_S, self._record_run)
            self._run_ids.append(event_id)
            self._run_sent_us.append(time.time_ns() // 1000)
            if len(self._run_ids) >= RUN_FRAMES:
                self._record_run()
            return
        self._record_run()
        event_type = json.loads(text).get("type", "unknown")
        self.writer.append(kind=f"model.client.{event_type}", source="gateway", payload=text)

    def _record_run(self) -> None:
        """One row for the frames sent since the last: `event_ids` in wire order (each names
        the `client.audio` event holding its audio, see FORWARDED_ID_PREFIX) and `sent_at_us`
        (Unix microseconds, just before each went on the wire); `forwarded_frames` reads it."""
        if self._run_timer is not None:
            self._run_timer.cancel()
            self._run_timer = None
        if not self._run_ids:
            return
        ids, sent = self._run_ids, self._run_sent_us
        self._run_ids, self._run_sent_us = [], []
        with contextlib.suppress(StoreError):  # a stopped writer: the session is ending anyway
            self.writer.append(
                kind=FORWARDED_KIND, source="gateway", payload=run_payload(ids, sent)
            )

    # ---- from the client ----

    def forward_audio(self, pcm: bytes, *, event_seq: int) -> None:
        """Sends the frame recorded as `client.audio` event `event_seq` on to the model."""
        if not self.machine.link_up:
            return  # recorded as client audio; the model hears the next frames
        self._queue(_Forward(pcm, f"{FORWARDED_ID_PREFIX}{event_seq}"))

    def screen_changed(self, state: dict[str, Any], digest: str) -> None:
        self._feed(turns.ScreenChanged(state, digest))

    def user_text(self, text: str) -> None:
        self._feed(turns.UserText(text))

    def playback(self, *, response_id: str, played_ms: int, finished: bool) -> None:
        self._feed(turns.PlaybackReport(response_id, played_ms, finished))

    async def deliver_tool_outputs(self, outputs: list[ToolOutput]) -> None:
        """Records each outcome once, closes each call in the conversation once, then one
        response.create; returns once the outcomes are durable."""
        self._feed(turns.ToolOutcomes(tuple(outputs)))
        await self.writer.flush()

    # ---- the machine ----

    def _feed(self, event: turns.Event) -> None:
        commands = self.machine.handle(event, now=time.monotonic())
        for command in commands:
            self._apply(command)
        self._arm_tick()

    def _apply(self, command: turns.Command) -> None:
        match command:
            case turns.Record(kind=kind, payload=payload):
                self._last_seq = self.writer.append(kind=kind, source="gateway", payload=payload)
            case turns.SendModel(event=event):
                self._queue(event)
            case turns.StopPlayback(response_id=response_id, item_id=item_id):
                self._send_to_client(
                    pb.ServerMessage(
                        seq=self._last_seq,
                        stop_playback=pb.StopPlayback(response_id=response_id, item_id=item_id),
                    )
                )
            case turns.ToolStatus(call_id=call_id, name=name, state=state, detail=detail):
                self._send_to_client(
                    pb.ServerMessage(
                        tool=pb.ToolStatus(
                            call_id=call_id,
                            name=name,
                            state=TOOL_STATES.get(state, pb.ToolStatus.STATE_UNSPECIFIED),
                            detail=detail[:500],
                        )
                    )
                )
            case turns.Settle():
                self._settle(
                    SettleRequest(
                        connection_id=self._connection_id,
                        response_id=command.response_id,
                        interrupted=command.interrupted,
                        decided_by=command.decided_by,
                        calls=list(command.calls),
                        turns=command.turns,
                        responses=command.responses,
                    )
                )

    def _arm_tick(self) -> None:
        deadline = self.machine.next_deadline()
        if deadline == self._tick_at and self._tick is not None:
            return  # 50 audio events a second mostly leave the next deadline where it was
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._tick_at = deadline
        if deadline is not None and not self._closing:
            delay = max(0.0, deadline - time.monotonic())
            self._tick = asyncio.get_running_loop().call_later(delay, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None  # fired: the next _arm_tick must arm a new one
        self._feed(turns.Tick())

    # ---- from the model ----

    async def _read(self, link: ModelLink, generation: int) -> None:
        try:
            async for raw, event_type, data in link.events():
                if generation != self._generation:
                    return
                if event_type == "response.output_audio.delta":
                    self._on_audio_delta(data)
                    continue
                self._last_seq = seq = self.writer.append(
                    kind=f"model.server.{event_type}", source="model", payload=raw
                )
                self._to_client(event_type, data, seq)
                self._feed(turns.ModelEvent(event_type, data, seq))
                if event_type == "error" and self._on_error(data, seq):
                    return
        except ModelLinkClosed as exc:
            if generation == self._generation and not self._closing:
                self._link_lost(exc.reason, cause="link_drop")
        except Exception:
            log.exception("model pump failed")
            if generation == self._generation and not self._closing:
                self._link_lost("the gateway's model reader failed", cause="link_drop")

    def _on_audio_delta(self, data: dict[str, Any]) -> None:
        pcm = base64.b64decode(data.get("delta", ""))
        payload = {k: v for k, v in data.items() if k != "delta"}
        self._last_seq = seq = self.writer.append_audio(
            stream="output",
            pcm=pcm,
            kind="model.server.response.output_audio.delta",
            source="model",
            payload=payload,
        )
        response_id = str(data.get("response_id", ""))
        item_id = str(data.get("item_id", ""))
        self._feed(turns.AudioDelivered(response_id, item_id, len(pcm)))
        self._send_to_client(
            pb.ServerMessage(
                seq=seq,
                audio=pb.AssistantAudio(response_id=response_id, item_id=item_id, pcm16=pcm),
            )
        )

    def _to_client(self, event_type: str, data: dict[str, Any], seq: int) -> None:
        """Transcripts for the client; the turn rules are the machine's."""
        if event_type in (
            "response.output_audio_transcript.delta",
            "response.output_audio_transcript.done",
        ):
            final = event_type.endswith(".done")
            self._send_to_client(
                pb.ServerMessage(
                    seq=seq,
                    transcript=pb.Transcript(
                        role=pb.Transcript.ROLE_ASSISTANT,
                        item_id=str(data.get("item_id", "")),
                        response_id=str(data.get("response_id", "")),
                        text=str(data.get("transcript" if final else "delta", "")),
                        final=final,
                    ),
                )
            )
        elif event_type == "conversation.item.input_audio_transcription.completed":
            self._send_to_client(
                pb.ServerMessage(
                    seq=seq,
                    transcript=pb.Transcript(
                        role=pb.Transcript.ROLE_USER,
                        item_id=str(data.get("item_id", "")),
                        text=str(data.get("transcript", "")),
                        final=True,
                    ),
                )
            )

    def _on_error(self, data: dict[str, Any], seq: int) -> bool:
        """Classifies a model error; returns True if this link is finished (a fatal error such
        as `session_expired`), in which case the session gets a new link in place."""
        error = data.get("error", {}) if isinstance(data.get("error"), dict) else {}
        code = str(error.get("code", ""))
        severity = classify_error(data)
        self.writer.append(
            kind="decision.model_error_classified",
            source="gateway",
            payload={"code": code, "severity": severity, "error_seq": seq},
        )
        if severity != "fatal":
            return False
        if code in ("session_expired", "session_closed"):
            self._link_lost(f"the model ended the link ({code})", cause=code)
            return True
        # Keys, quota, model: a new link would fail the same way.
        self._feed(turns.LinkDown(code))
        self._send_to_client(
            pb.ServerMessage(
                seq=seq,
                error=pb.Error(
                    code=grpc.StatusCode.UNAVAILABLE.value[0],
                    message=f"the model ended the session ({code}): {error.get('message', '')}",
                    fatal=True,
                ),
            )
        )
        return True
