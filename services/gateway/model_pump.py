"""The model side of a live session: the Realtime link, and the millisecond turn rules.

Audio and every model event flow through here without touching Temporal. Each event is appended
to the log exactly as sent or received (audio moved into the audio chunks and replaced by a
reference); each decision (context injected, response requested, playback estimated, ...) is an
event too. The workflow hears only the coarse outcome: turn committed, response done, function
calls, link lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.api.earpiece.v1 import session_pb2 as pb
from services.realtime.link import ModelLink, ModelLinkClosed, classify_error
from services.store.writer import SessionWriter
from workflows.messages import GatewayEvent, GatewayEventKind, ToolCall, ToolOutput

log = logging.getLogger(__name__)

BYTES_PER_MS = 48  # PCM16 mono at 24 kHz
CONTEXT_PREFIX = "Context update:"
PLAYBACK_REPORT_GRACE_S = 3.0
PLAYBACK_ESTIMATE_GRACE_S = 0.5
APPEND_PREFIX = '{"type":"input_audio_buffer.append"'


@dataclass
class ResponseState:
    response_id: str
    item_ids: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    first_delivered_at: float | None = None
    done: bool = False
    status: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    playback_done: bool = False
    # The latest progress the client reported for this response, if any.
    played_ms: int | None = None
    estimate: asyncio.TimerHandle | None = None

    def generated_ms(self) -> int:
        return self.audio_bytes // BYTES_PER_MS

    def playing(self) -> bool:
        return self.first_delivered_at is not None and not self.playback_done


class ModelPump:
    def __init__(
        self,
        *,
        link: ModelLink,
        writer: SessionWriter,
        send_to_client: Callable[[pb.ServerMessage], None],
        signal: Callable[[GatewayEvent], None],
        config: dict[str, Any],
        tool_definitions: list[dict[str, Any]],
    ) -> None:
        self.link = link
        self.writer = writer
        self._send_to_client = send_to_client
        self._signal = signal
        self._config = config
        self._tools = tool_definitions
        self._responses: dict[str, ResponseState] = {}
        self._active: str | None = None
        # A response.create waiting for the active response to finish (one, never two).
        self._response_wanted = False
        self._requesting = asyncio.Lock()
        self._screen: dict[str, Any] | None = None
        self._screen_hash: str | None = None
        self._injected_hash: str | None = None
        self._context_item: str | None = None
        self._context_count = 0
        self._pending_appends: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._client_reports = False
        self.lost = asyncio.Event()

    # ---- lifecycle ----

    async def start(self) -> None:
        await self.link.connect()
        self._task = asyncio.create_task(self._pump(), name="model-pump")
        await self.link.configure(
            instructions=str(self._config.get("instructions", "")),
            voice=str(self._config.get("voice") or "marin"),
            tools=self._tools,
        )

    async def close(self) -> None:
        for state in self._responses.values():
            if state.estimate is not None:
                state.estimate.cancel()
        await self.link.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def record_sent(self, text: str) -> None:
        """Called by the link under its send lock, so the log has the wire's order."""
        if text.startswith(APPEND_PREFIX):
            # 50 a second: find the event id without decoding the base64 audio. The link writes
            # compact JSON in our key order, so the id is the last value.
            event_id = text.rsplit('"event_id":"', 1)[-1][:-2]
            self.writer.append(
                kind="model.client.input_audio_buffer.append",
                source="gateway",
                payload={
                    "type": "input_audio_buffer.append",
                    "event_id": event_id,
                    "audio": self._pending_appends.pop(event_id, None),
                },
            )
            return
        event_type = json.loads(text).get("type", "unknown")
        self.writer.append(kind=f"model.client.{event_type}", source="gateway", payload=text)

    # ---- from the client ----

    async def forward_audio(self, pcm: bytes, ref: dict[str, Any]) -> None:
        event_id = f"evt_in_{ref['event_seq']}"
        self._pending_appends[event_id] = ref
        await self.link.send(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm).decode("ascii"),
                "event_id": event_id,
            }
        )

    def screen_changed(self, state: dict[str, Any], digest: str) -> None:
        self._screen, self._screen_hash = state, digest

    async def user_text(self, text: str) -> None:
        await self.link.add_user_text(text=text)
        await self.request_response(reason="user_text")

    def playback(self, *, response_id: str, played_ms: int, finished: bool) -> None:
        self._client_reports = True
        state = self._responses.get(response_id)
        if state is None:
            return
        state.played_ms = played_ms
        if finished:
            self._playback_done(state, estimated=False)

    @property
    def assistant_playing(self) -> bool:
        """Whether the client is (or should be) playing assistant audio right now."""
        return any(state.playing() for state in self._responses.values())

    async def deliver_tool_outputs(self, outputs: list[ToolOutput]) -> None:
        """Function call outputs, then exactly one response.create once none is active."""
        for out in outputs:
            await self.link.send_function_output(call_id=out.call_id, output=out.output)
            self.tool_status(out.call_id, out.name, out.outcome, out.output)
        await self.request_response(reason="tool_outputs")

    # ---- responses ----

    async def request_response(self, *, reason: str) -> None:
        """Injects fresh screen context if it changed, then response.create; if a response is
        active, one create is queued for its response.done instead."""
        async with self._requesting:
            if self._active is not None:
                if not self._response_wanted:
                    self._response_wanted = True
                    self.writer.append(
                        kind="decision.response_deferred",
                        source="gateway",
                        payload={"reason": reason, "active_response": self._active},
                    )
                return
            self._response_wanted = False
            await self._inject_context()
            self._active = "pending"
            self.writer.append(
                kind="decision.response_requested", source="gateway", payload={"reason": reason}
            )
            await self.link.create_response()

    async def _inject_context(self) -> None:
        if self._screen is None or self._screen_hash == self._injected_hash:
            return
        old = self._context_item
        self._context_count += 1
        item_id = f"ctx_{self._context_count}_{self._screen_hash}"
        text = f"{CONTEXT_PREFIX} {json.dumps(self._screen, sort_keys=True)}"
        await self.link.add_user_text(text=text, item_id=item_id)
        self._context_item, self._injected_hash = item_id, self._screen_hash
        self.writer.append(
            kind="decision.context_injected",
            source="gateway",
            payload={"item_id": item_id, "hash": self._screen_hash},
        )
        if old is not None:
            # Older screen states must not pile up in the model's context.
            await self.link.delete_item(item_id=old)
            self.writer.append(
                kind="decision.context_deleted", source="gateway", payload={"item_id": old}
            )

    # ---- from the model ----

    async def _pump(self) -> None:
        try:
            async for raw, event_type, data in self.link.events():
                if event_type == "response.output_audio.delta":
                    self._on_audio_delta(data)
                    continue
                seq = self.writer.append(
                    kind=f"model.server.{event_type}", source="model", payload=raw
                )
                await self._on_event(event_type, data, seq)
        except ModelLinkClosed as exc:
            seq = self.writer.append(
                kind="model.link_lost", source="gateway", payload={"reason": exc.reason}
            )
            self._send_to_client(
                pb.ServerMessage(
                    seq=seq,
                    state=pb.SessionState(
                        state=pb.SessionState.STATE_MODEL_LINK_LOST, detail=exc.reason
                    ),
                )
            )
            self._signal(GatewayEvent(kind=GatewayEventKind.LINK_LOST, seq=seq))
            self.lost.set()
        except Exception:
            log.exception("model pump failed")
            self.lost.set()
            raise

    def _on_audio_delta(self, data: dict[str, Any]) -> None:
        pcm = base64.b64decode(data.get("delta", ""))
        payload = {k: v for k, v in data.items() if k != "delta"}
        seq = self.writer.append_audio(
            stream="output",
            pcm=pcm,
            kind="model.server.response.output_audio.delta",
            source="model",
            payload=payload,
        )
        response_id = str(data.get("response_id", ""))
        state = self._responses.setdefault(response_id, ResponseState(response_id))
        state.audio_bytes += len(pcm)
        if state.first_delivered_at is None:
            state.first_delivered_at = time.monotonic()
        self._send_to_client(
            pb.ServerMessage(
                seq=seq,
                audio=pb.AssistantAudio(
                    response_id=response_id, item_id=str(data.get("item_id", "")), pcm16=pcm
                ),
            )
        )

    async def _on_event(self, event_type: str, data: dict[str, Any], seq: int) -> None:
        match event_type:
            case "input_audio_buffer.speech_started":
                await self._on_speech_started(seq)
            case "input_audio_buffer.committed":
                self._signal(GatewayEvent(kind=GatewayEventKind.TURN_COMMITTED, seq=seq))
                await self.request_response(reason="turn_committed")
            case "response.created":
                response_id = str(data.get("response", {}).get("id", ""))
                self._active = response_id
                self._responses.setdefault(response_id, ResponseState(response_id))
            case "response.output_audio_transcript.delta" | "response.output_audio_transcript.done":
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
            case "conversation.item.input_audio_transcription.completed":
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
            case "response.output_item.added":
                item = data.get("item", {})
                if item.get("type") == "message":
                    state = self._responses.setdefault(
                        str(data.get("response_id", "")),
                        ResponseState(str(data.get("response_id", ""))),
                    )
                    state.item_ids.append(str(item.get("id", "")))
            case "response.function_call_arguments.done":
                state = self._responses.setdefault(
                    str(data.get("response_id", "")), ResponseState(str(data.get("response_id")))
                )
                call = ToolCall(
                    call_id=str(data.get("call_id", "")),
                    name=str(data.get("name", "")),
                    arguments=str(data.get("arguments", "")),
                    response_id=state.response_id,
                    seq=seq,
                )
                state.calls.append(call)
                self.tool_status(call.call_id, call.name, "requested", "")
            case "response.done":
                await self._on_response_done(data, seq)
            case "error":
                await self._on_error(data, seq)
            case _:
                pass

    async def _on_speech_started(self, seq: int) -> None:
        """Barge-in: the user talks over the assistant. The client stops playback now, and the
        assistant item is cut to what the user actually heard, so the model does not believe
        it said what nobody heard."""
        for state in list(self._responses.values()):
            # Playing audio, or an active response whose item exists but has no audio yet.
            unheard = not state.done and state.first_delivered_at is None and bool(state.item_ids)
            if not (state.playing() or unheard):
                continue
            item_id = state.item_ids[-1] if state.item_ids else ""
            self._send_to_client(
                pb.ServerMessage(
                    seq=seq,
                    stop_playback=pb.StopPlayback(response_id=state.response_id, item_id=item_id),
                )
            )
            if state.played_ms is not None:
                heard, source = state.played_ms, "reported"
            elif state.first_delivered_at is None:
                heard, source = 0, "estimated"
            else:
                heard = int((time.monotonic() - state.first_delivered_at) * 1000)
                source = "estimated"
            # Beyond the generated audio is a fatal error on the API (pipecat #1963): clamp.
            audio_end_ms = max(0, min(heard, state.generated_ms()))
            self._playback_done(state, estimated=source == "estimated", interrupted=True)
            if not item_id:
                continue
            if audio_end_ms == 0:
                # Truncating at 0 ms is rejected; the item goes instead.
                self.writer.append(
                    kind="decision.item_deleted",
                    source="gateway",
                    payload={"item_id": item_id, "reason": "barge_in_before_audio_heard"},
                )
                await self.link.delete_item(item_id=item_id)
            else:
                self.writer.append(
                    kind="decision.truncated",
                    source="gateway",
                    payload={
                        "item_id": item_id,
                        "audio_end_ms": audio_end_ms,
                        "heard_ms": heard,
                        "generated_ms": state.generated_ms(),
                        "heard_from": source,
                    },
                )
                await self.link.truncate(item_id=item_id, audio_end_ms=audio_end_ms)

    async def _on_response_done(self, data: dict[str, Any], seq: int) -> None:
        response = data.get("response", {})
        response_id = str(response.get("id", ""))
        state = self._responses.setdefault(response_id, ResponseState(response_id))
        state.done, state.status = True, str(response.get("status", ""))
        # Responses are serialised, so whatever was active has finished.
        self._active = None
        self._signal(
            GatewayEvent(
                kind=GatewayEventKind.RESPONSE_DONE,
                seq=seq,
                detail={"response_id": response_id, "status": state.status},
            )
        )
        if state.calls:
            for call in state.calls:
                # Held in the workflow until the response's audio has been played.
                self.writer.append(
                    kind="decision.tool_held",
                    source="gateway",
                    payload={"call_id": call.call_id, "name": call.name, "response": response_id},
                )
                self.tool_status(call.call_id, call.name, "held", "")
            self._signal(
                GatewayEvent(
                    kind=GatewayEventKind.FUNCTION_CALL_REQUESTED,
                    seq=seq,
                    detail={"response_id": response_id, "status": state.status},
                    calls=list(state.calls),
                )
            )
        self._schedule_playback_estimate(state)
        if self._response_wanted:
            await self.request_response(reason="deferred")

    def _schedule_playback_estimate(self, state: ResponseState) -> None:
        """A client that never reports playback gets an estimate: the audio's duration since
        its first frame was delivered. A real report cancels it."""
        if state.playback_done:
            return
        if state.first_delivered_at is None:
            self._playback_done(state, estimated=True)
            return
        # A client that reports playback gets time for its report to arrive (its player lags
        # delivery by its jitter buffer); one that never has is estimated sooner.
        grace = PLAYBACK_REPORT_GRACE_S if self._client_reports else PLAYBACK_ESTIMATE_GRACE_S
        played_by = state.first_delivered_at + state.audio_bytes / BYTES_PER_MS / 1000 + grace
        delay = max(0.0, played_by - time.monotonic())
        state.estimate = asyncio.get_running_loop().call_later(
            delay, self._playback_done, state, True
        )

    def _playback_done(
        self, state: ResponseState, estimated: bool, *, interrupted: bool = False
    ) -> None:
        if state.playback_done:
            return
        state.playback_done = True
        if state.estimate is not None:
            state.estimate.cancel()
        seq = self.writer.append(
            kind="decision.playback_done",
            source="gateway",
            payload={
                "response_id": state.response_id,
                "estimated": estimated,
                "interrupted": interrupted,
                "audio_ms": state.generated_ms(),
            },
        )
        self._signal(
            GatewayEvent(
                kind=GatewayEventKind.PLAYBACK_DONE,
                seq=seq,
                detail={"response_id": state.response_id, "estimated": str(estimated).lower()},
            )
        )

    async def _on_error(self, data: dict[str, Any], seq: int) -> None:
        error = data.get("error", {}) if isinstance(data.get("error"), dict) else {}
        code = str(error.get("code", ""))
        severity = classify_error(data)
        self.writer.append(
            kind="decision.model_error_classified",
            source="gateway",
            payload={"code": code, "severity": severity, "error_seq": seq},
        )
        if code == "conversation_already_has_active_response":
            # Never a failure: send again after the active response's response.done.
            self._response_wanted = True
            return
        if severity == "fatal":
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

    def tool_status(self, call_id: str, name: str, outcome: str, detail: str) -> None:
        states = {
            "requested": pb.ToolStatus.STATE_REQUESTED,
            "held": pb.ToolStatus.STATE_HELD,
            "running": pb.ToolStatus.STATE_RUNNING,
            "succeeded": pb.ToolStatus.STATE_SUCCEEDED,
            "failed": pb.ToolStatus.STATE_FAILED,
            "dropped": pb.ToolStatus.STATE_DROPPED,
        }
        self._send_to_client(
            pb.ServerMessage(
                tool=pb.ToolStatus(
                    call_id=call_id,
                    name=name,
                    state=states.get(outcome, pb.ToolStatus.STATE_UNSPECIFIED),
                    detail=detail[:500],
                )
            )
        )
