"""One simulated Realtime connection: the GA protocol as the server speaks it.

Every event sent is built as JSON, validated against the SDK's server-event types (a simulator
bug fails loudly instead of teaching the client a wrong protocol), recorded, then sent. Every
client event is recorded verbatim and validated; an invalid one is answered with an `error`
event shaped like the real server's, and the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import random
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from services.realtime.protocol import ProtocolError, validate_client_event, validate_server_event
from services.realtime.simulator.conversation import (
    Conversation,
    ConversationEntry,
    output_token_usage,
)
from services.realtime.simulator.scenario import FunctionCallSpec, ResponseSpec, Scenario
from services.realtime.simulator.vad import EnergyVad, SpeechStarted, VadSettings
from services.realtime.simulator.voice import BYTES_PER_MS

if TYPE_CHECKING:
    from services.realtime.simulator.server import ScriptCursor

__all__ = ["SimulatorBug", "SimulatorSession", "WireRecord"]

log = logging.getLogger(__name__)

PCM_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
_MIN_COMMIT_MS = 100
_ARGUMENT_DELTA_CHARS = 24
_ID_ALPHABET = string.ascii_letters + string.digits
CancelReason = Literal["turn_detected", "client_cancelled"]


class SimulatorBug(RuntimeError):
    """The simulator built an event that is not valid GA protocol."""


class _ConnectionGone(Exception):
    """The socket closed (or was dropped) while something still wanted to send."""


@dataclass(frozen=True, slots=True)
class WireRecord:
    direction: Literal["sent", "received"]
    text: str
    monotonic_s: float


class _Ids:
    """Ids shaped like the real server's (`event_…`, `item_…`), reproducible with a seed."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def new(self, prefix: str) -> str:
        return prefix + "_" + "".join(self._rng.choice(_ID_ALPHABET) for _ in range(20))


class _ResponseRun:
    def __init__(self, *, response_id: str, spec: ResponseSpec, script_index: int) -> None:
        self.response_id = response_id
        self.spec = spec
        self.script_index = script_index
        self.cancel_reason: CancelReason | None = None
        self._cancel_requested = asyncio.Event()
        self.output: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.audio_ms = 0
        self.transcript = ""
        self.arguments_text = ""
        self.input_usage: dict[str, int] = {}

    def request_cancel(self, reason: CancelReason) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self._cancel_requested.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    async def wait(self, seconds: float) -> bool:
        """Sleep, waking early on cancellation; True if cancelled."""
        if seconds <= 0 or self.cancelled:
            return self.cancelled
        try:
            await asyncio.wait_for(self._cancel_requested.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True


def default_session_config(*, model: str) -> dict[str, Any]:
    """The session a new connection starts with, as `session.created` reports it."""
    return {
        "type": "realtime",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful assistant.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": _server_vad_defaults(),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": "marin", "speed": 1.0},
        },
    }


def _server_vad_defaults() -> dict[str, Any]:
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def _semantic_vad_defaults() -> dict[str, Any]:
    return {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }


# Objects the API replaces whole (with defaults filled in) rather than merging key by key.
_REPLACED_WHOLE = {"turn_detection", "format", "transcription", "noise_reduction", "tools"}


def _merge_session(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(current)
    for key, value in patch.items():
        if key == "turn_detection" and isinstance(value, dict):
            defaults = (
                _semantic_vad_defaults()
                if value.get("type") == "semantic_vad"
                else _server_vad_defaults()
            )
            merged[key] = {**defaults, **copy.deepcopy(value)}
        elif key in _REPLACED_WHOLE or not isinstance(value, dict):
            merged[key] = copy.deepcopy(value)
        elif isinstance(merged.get(key), dict):
            merged[key] = _merge_session(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _ClientError(Exception):
    """A client event the server refuses; becomes an `error` event."""

    def __init__(self, *, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class SimulatorSession:
    """The server side of one WebSocket connection, and its record of the wire."""

    def __init__(
        self,
        *,
        connection: ServerConnection,
        scenario: Scenario,
        script: ScriptCursor,
        realtime_pacing: bool,
        model: str,
        index: int,
        on_bug: Callable[[BaseException], None],
    ) -> None:
        self.index = index
        self.model = model
        self.scenario = scenario
        self.realtime_pacing = realtime_pacing
        self.wire: list[WireRecord] = []
        self._sent_counts: Counter[str] = Counter()
        self.session_config = default_session_config(model=model)
        self.conversation = Conversation()
        self._generated: dict[str, bytearray] = {}
        self.input_audio = bytearray()
        """Every byte the client appended, in order."""
        self.truncations: list[tuple[str, int]] = []
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self._connection = connection
        self._script = script
        self._on_bug = on_bug
        seed = scenario.session.id_seed
        self._ids = _Ids(random.Random(None if seed is None else f"{seed}:{index}"))
        self._send_lock = asyncio.Lock()
        self._wire_changed = asyncio.Condition()
        self._buffer = bytearray()
        self._vad = EnergyVad(VadSettings())
        self._speech_item_id: str | None = None
        self._active: _ResponseRun | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing_tasks: set[asyncio.Future[None]] = set()
        self._gone = False
        self.conversation_id = self._ids.new("conv")

    # ----------------------------------------------------------------- what tests look at

    @property
    def sent_texts(self) -> list[str]:
        return [record.text for record in self.wire if record.direction == "sent"]

    @property
    def received_texts(self) -> list[str]:
        return [record.text for record in self.wire if record.direction == "received"]

    def sent_events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        events = [json.loads(text) for text in self.sent_texts]
        return [e for e in events if event_type is None or e.get("type") == event_type]

    def received_events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        events = []
        for text in self.received_texts:
            try:
                events.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        return [
            e
            for e in events
            if isinstance(e, dict) and (event_type is None or e.get("type") == event_type)
        ]

    @property
    def generated_audio(self) -> dict[str, bytes]:
        """Assistant audio exactly as generated and sent, by item id (never truncated)."""
        return {item_id: bytes(audio) for item_id, audio in self._generated.items()}

    @property
    def all_generated_audio(self) -> bytes:
        """Every assistant audio byte this connection generated, in generation order."""
        return b"".join(self._generated.values())

    @property
    def active_response_id(self) -> str | None:
        return self._active.response_id if self._active else None

    async def wait_for_sent(
        self, event_type: str, *, count: int = 1, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Wait until `count` events of `event_type` were sent; returns the `count`-th."""

        def found() -> bool:
            return self._sent_counts[event_type] >= count or self.closed.is_set()

        async with self._wire_changed:
            await asyncio.wait_for(self._wire_changed.wait_for(found), timeout=timeout_s)
        events = self.sent_events(event_type)
        if len(events) < count:
            raise ConnectionError(
                f"connection closed ({self.close_reason}) after {len(events)} {event_type} events"
            )
        return events[count - 1]

    # ----------------------------------------------------------------- connection lifecycle

    async def run(self) -> None:
        """Serve the connection until it closes."""
        expiry = self._start_task(self._expire_after(self.scenario.session.lifetime_s))
        try:
            await self._emit("session.created", session=copy.deepcopy(self.session_config))
            async for message in self._connection:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                await self._record("received", text)
                if isinstance(message, bytes):
                    await self._emit_error(
                        code="invalid_type",
                        message="Binary frames are not supported; send JSON text frames.",
                    )
                    continue
                await self._handle_text(text)
        except (ConnectionClosed, _ConnectionGone):
            pass
        except SimulatorBug as bug:
            self._on_bug(bug)
            await self._connection.close(code=1011, reason="simulator bug")
        finally:
            self._gone = True
            expiry.cancel()
            await self._cancel_tasks()
            code = self._connection.close_code
            self.close_reason = self.close_reason or (
                f"closed with code {code}" if code is not None else "closed"
            )
            async with self._wire_changed:
                self.closed.set()
                self._wire_changed.notify_all()

    async def drop(self) -> None:
        """Drop the socket without a close frame, as a network failure would."""
        self.close_reason = "dropped by scenario"
        self._gone = True
        transport = self._connection.transport
        transport.abort()

    def _start_task(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_finished)
        return task

    def _task_finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, SimulatorBug):
            self._on_bug(error)
            self._start_close(code=1011, reason="simulator bug")
        elif error is not None and not isinstance(error, ConnectionClosed | _ConnectionGone):
            self._on_bug(error)
            self._start_close(code=1011, reason="simulator error")

    def _start_close(self, *, code: int, reason: str) -> None:
        closing = asyncio.ensure_future(self._connection.close(code=code, reason=reason))
        self._closing_tasks.add(closing)
        closing.add_done_callback(self._closing_tasks.discard)

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        pending = [task for task in self._tasks if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _expire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        run = self._active
        if run is not None and run.task is not None:
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
            self._active = None
        shown = f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"
        self.close_reason = "session expired"
        await self._emit_error(
            code="session_expired",
            message=f"Your session hit the maximum duration of {shown}.",
        )
        await self._connection.close(code=1000, reason="session expired")

    # ----------------------------------------------------------------- sending and recording

    async def _record(self, direction: Literal["sent", "received"], text: str) -> None:
        async with self._wire_changed:
            self.wire.append(WireRecord(direction, text, time.monotonic()))
            self._wire_changed.notify_all()

    async def _emit(
        self,
        event_type: str,
        *,
        before_send: Callable[[], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Validate, send and record one event. `before_send` runs under the send lock, so a
        state change it makes is ordered with the event on the wire."""
        event: dict[str, Any] = {"type": event_type, "event_id": self._ids.new("event"), **fields}
        try:
            validate_server_event(event)
        except ProtocolError as exc:
            raise SimulatorBug(f"the simulator built an invalid event: {exc}") from exc
        text = json.dumps(event, separators=(",", ":"))
        async with self._send_lock:
            if self._gone:
                raise _ConnectionGone
            if before_send is not None:
                before_send()
            try:
                await self._connection.send(text)
            except ConnectionClosed as exc:
                self._gone = True
                raise _ConnectionGone from exc
            self._sent_counts[event_type] += 1
            await self._record("sent", text)
        return event

    async def _emit_item(
        self, event_type: str, item: dict[str, Any], *, previous_item_id: str | None
    ) -> None:
        """`conversation.item.added`/`done`: a snapshot of the item as it is now."""
        await self._emit(event_type, previous_item_id=previous_item_id, item=copy.deepcopy(item))

    async def _emit_error(
        self,
        *,
        code: str,
        message: str,
        param: str | None = None,
        client_event_id: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        await self._emit(
            "error",
            error={
                "type": error_type,
                "code": code,
                "message": message,
                "param": param,
                "event_id": client_event_id,
            },
        )

    # ----------------------------------------------------------------- client events

    async def _handle_text(self, text: str) -> None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            await self._emit_error(
                code="invalid_json",
                message=f"We could not parse the JSON body of your request: {exc.msg}.",
            )
            return
        try:
            validate_client_event(data)
        except ProtocolError as exc:
            await self._emit_error(
                code=exc.code, message=exc.message, param=exc.path, client_event_id=exc.event_id
            )
            return
        handler = self._handlers.get(data["type"])
        client_event_id = data.get("event_id")
        try:
            if handler is None:
                raise _ClientError(
                    code="invalid_value",
                    message=f"{data['type']} is only supported over WebRTC and SIP.",
                    param="type",
                )
            await handler(self, data)
        except _ClientError as refusal:
            await self._emit_error(
                code=refusal.code,
                message=refusal.message,
                param=refusal.param,
                client_event_id=client_event_id,
            )

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        patch = event["session"]
        if patch.get("type") != "realtime":
            raise _ClientError(
                code="invalid_value",
                message="The simulator serves realtime sessions only, not transcription sessions.",
                param="session.type",
            )
        merged = _merge_session(self.session_config, patch)
        for direction in ("input", "output"):
            audio_format = merged.get("audio", {}).get(direction, {}).get("format") or {}
            if audio_format.get("type", "audio/pcm") != "audio/pcm":
                raise _ClientError(
                    code="invalid_value",
                    message="The simulator supports audio/pcm at 24 kHz only.",
                    param=f"session.audio.{direction}.format.type",
                )
        self.session_config = merged
        turn_detection = self._turn_detection()
        if turn_detection is not None:
            defaults = VadSettings()

            def setting(name: str, default: float) -> float:
                value = turn_detection.get(name)  # semantic_vad has none of these: defaults
                return float(value) if value is not None else default

            self._vad.reconfigure(
                VadSettings(
                    threshold=setting("threshold", defaults.threshold),
                    prefix_padding_ms=int(setting("prefix_padding_ms", defaults.prefix_padding_ms)),
                    silence_duration_ms=int(
                        setting("silence_duration_ms", defaults.silence_duration_ms)
                    ),
                )
            )
        await self._emit("session.updated", session=copy.deepcopy(self.session_config))

    def _turn_detection(self) -> dict[str, Any] | None:
        audio_input = self.session_config.get("audio", {}).get("input", {})
        turn_detection = audio_input.get("turn_detection")
        return turn_detection if isinstance(turn_detection, dict) else None

    async def _on_append(self, event: dict[str, Any]) -> None:
        try:
            pcm = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _ClientError(
                code="invalid_value",
                message="Invalid 'audio': expected base64-encoded PCM16 audio.",
                param="audio",
            ) from exc
        self.input_audio.extend(pcm)
        self._buffer.extend(pcm)
        turn_detection = self._turn_detection()
        if turn_detection is None:
            self._vad.feed(pcm)  # keeps the byte clock running for when VAD is turned on
            return
        for decision in self._vad.feed(pcm):
            if isinstance(decision, SpeechStarted):
                await self._on_speech_started(decision.audio_start_ms, turn_detection)
            else:
                item_id = self._speech_item_id or self._ids.new("item")
                self._speech_item_id = None
                await self._emit(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=decision.audio_end_ms,
                    item_id=item_id,
                )
                await self._commit(item_id=item_id)
                wants_response = bool(turn_detection.get("create_response"))
                if (
                    wants_response or self.scenario.session.force_create_response
                ) and self._active is None:
                    await self._start_response(metadata=None)

    async def _on_speech_started(self, audio_start_ms: int, turn_detection: dict[str, Any]) -> None:
        self._speech_item_id = self._ids.new("item")
        await self._emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=audio_start_ms,
            item_id=self._speech_item_id,
        )
        if turn_detection.get("interrupt_response") and self._active is not None:
            self._active.request_cancel("turn_detected")

    async def _on_commit(self, event: dict[str, Any]) -> None:
        buffered_ms = len(self._buffer) / BYTES_PER_MS
        if buffered_ms < _MIN_COMMIT_MS:
            raise _ClientError(
                code="input_audio_buffer_commit_empty",
                message=(
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    f"{_MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms "
                    "of audio."
                ),
            )
        item_id = self._speech_item_id or self._ids.new("item")
        self._speech_item_id = None
        self._vad.reset(at_ms=self._vad.position_ms)
        await self._commit(item_id=item_id)

    async def _commit(self, *, item_id: str) -> None:
        audio = bytes(self._buffer)
        self._buffer.clear()
        item: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self.conversation.append(ConversationEntry(item=item, audio=bytearray(audio)))
        await self._emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        await self._emit(
            "conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)
        )
        await self._emit(
            "conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)
        )
        # Each committed turn is the next scripted utterance, transcribed or not, so the script
        # stays aligned if transcription is switched on later.
        transcript = self._script.take_utterance()
        transcription = self.session_config.get("audio", {}).get("input", {}).get("transcription")
        if not transcription or transcript is None:
            return
        words = transcript.split(" ")
        for piece in [words[0], *(f" {word}" for word in words[1:])]:
            await self._emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=piece,
            )
        item["content"][0]["transcript"] = transcript
        await self._emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": round(len(audio) / BYTES_PER_MS / 1000, 3)},
        )

    async def _on_clear(self, event: dict[str, Any]) -> None:
        self._buffer.clear()
        self._speech_item_id = None
        self._vad.reset(at_ms=self._vad.position_ms)
        await self._emit("input_audio_buffer.cleared")

    async def _on_item_create(self, event: dict[str, Any]) -> None:
        item = copy.deepcopy(event["item"])
        kind = item["type"]
        if kind not in {"message", "function_call", "function_call_output"}:
            raise _ClientError(
                code="invalid_value",
                message=f"The simulator does not support {kind} items.",
                param="item.type",
            )
        if kind == "function_call" and not item.get("call_id"):
            raise _ClientError(
                code="missing_required_parameter",
                message="Missing required parameter: 'item.call_id'.",
                param="item.call_id",
            )
        if kind == "function_call_output" and item["call_id"] not in set(
            self.conversation.function_call_ids()
        ):
            raise _ClientError(
                code="invalid_value",
                message=f"No function call found with call_id '{item['call_id']}'.",
                param="item.call_id",
            )
        if "id" in item and item["id"] in self.conversation:
            raise _ClientError(
                code="invalid_value",
                message=f"Item with id '{item['id']}' already exists.",
                param="item.id",
            )
        item.setdefault("id", self._ids.new("item"))
        item["object"] = "realtime.item"
        item["status"] = "completed"
        entry = ConversationEntry(item=item)
        if event.get("previous_item_id") is not None:
            previous = event["previous_item_id"]
            if previous == "root":
                previous = None
            elif previous not in self.conversation:
                raise _ClientError(
                    code="invalid_value",
                    message=f"Previous item with id '{previous}' not found.",
                    param="previous_item_id",
                )
            self.conversation.insert_after(entry, previous_item_id=previous)
        else:
            previous = self.conversation.append(entry)
        await self._emit(
            "conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)
        )
        await self._emit(
            "conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)
        )

    async def _on_item_truncate(self, event: dict[str, Any]) -> None:
        item_id = event["item_id"]
        audio_end_ms = event["audio_end_ms"]
        entry = self.conversation.get(item_id)
        if entry is None:
            raise _ClientError(
                code="item_truncate_invalid_item_id",
                message=f"Item with item_id not found: {item_id}",
                param="item_id",
            )
        if not entry.is_assistant_audio or audio_end_ms <= 0:
            raise _ClientError(
                code="invalid_value",
                message="Only model output audio messages can be truncated",
                param="audio_end_ms" if entry.is_assistant_audio else "item_id",
            )
        if event["content_index"] != 0:
            raise _ClientError(
                code="invalid_value",
                message=f"Invalid content_index {event['content_index']}: the item has one part.",
                param="content_index",
            )
        if audio_end_ms > entry.audio_ms:
            raise _ClientError(
                code="invalid_value",
                message=(
                    f"Audio content of {entry.audio_ms}ms is already shorter than {audio_end_ms}ms"
                ),
                param="audio_end_ms",
            )
        del entry.audio[audio_end_ms * BYTES_PER_MS :]
        # The server drops the transcript so no text the user never heard stays in context.
        for part in entry.item.get("content", []):
            if part.get("type") == "output_audio":
                part["transcript"] = ""
        self.truncations.append((item_id, audio_end_ms))
        await self._emit(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=0,
            audio_end_ms=audio_end_ms,
        )

    async def _on_item_delete(self, event: dict[str, Any]) -> None:
        item_id = event["item_id"]
        if not self.conversation.delete(item_id):
            raise _ClientError(
                code="item_delete_invalid_item_id",
                message=f"Item with item_id not found: {item_id}",
                param="item_id",
            )
        await self._emit("conversation.item.deleted", item_id=item_id)

    async def _on_item_retrieve(self, event: dict[str, Any]) -> None:
        entry = self.conversation.get(event["item_id"])
        if entry is None:
            raise _ClientError(
                code="item_retrieve_invalid_item_id",
                message=f"Item with item_id not found: {event['item_id']}",
                param="item_id",
            )
        item = copy.deepcopy(entry.item)
        if entry.audio and item.get("type") == "message":
            for part in item.get("content", []):
                if part.get("type") in {"input_audio", "output_audio"}:
                    part["audio"] = base64.b64encode(bytes(entry.audio)).decode("ascii")
        await self._emit("conversation.item.retrieved", item=item)

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        if self._active is not None:
            raise _ClientError(
                code="conversation_already_has_active_response",
                message=(
                    "Conversation already has an active response in progress: "
                    f"{self._active.response_id}. Wait until the response is finished before "
                    "creating a new one."
                ),
            )
        metadata = (event.get("response") or {}).get("metadata")
        await self._start_response(metadata=metadata)

    async def _on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        run = self._active
        if run is None or run.cancelled or (wanted is not None and wanted != run.response_id):
            raise _ClientError(
                code="response_cancel_not_active",
                message="Cancellation failed: no active response found",
            )
        run.request_cancel("client_cancelled")

    _handlers: dict[str, Callable[[SimulatorSession, dict[str, Any]], Awaitable[None]]] = {
        "session.update": _on_session_update,
        "input_audio_buffer.append": _on_append,
        "input_audio_buffer.commit": _on_commit,
        "input_audio_buffer.clear": _on_clear,
        "conversation.item.create": _on_item_create,
        "conversation.item.truncate": _on_item_truncate,
        "conversation.item.delete": _on_item_delete,
        "conversation.item.retrieve": _on_item_retrieve,
        "response.create": _on_response_create,
        "response.cancel": _on_response_cancel,
    }

    # ----------------------------------------------------------------- responses

    async def _start_response(self, *, metadata: dict[str, str] | None) -> None:
        script_index, spec = self._script.take_response()
        run = _ResponseRun(response_id=self._ids.new("resp"), spec=spec, script_index=script_index)
        instructions = str(self.session_config.get("instructions") or "")
        # Billed on the conversation as it stood when the response began.
        run.input_usage = self.conversation.input_token_usage(instructions=instructions)
        self._active = run
        await self._emit("response.created", response=self._response_object(run, metadata=metadata))
        await self._emit(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 3.0},
            ],
        )
        run.task = self._start_task(self._play(run, metadata=metadata))

    def _response_object(
        self,
        run: _ResponseRun,
        *,
        metadata: dict[str, str] | None,
        status: str = "in_progress",
        usage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        voice = self.session_config.get("audio", {}).get("output", {}).get("voice", "marin")
        status_details = None
        if status == "cancelled":
            status_details = {"type": "cancelled", "reason": run.cancel_reason}
        return {
            "object": "realtime.response",
            "id": run.response_id,
            "status": status,
            "status_details": status_details,
            "output": copy.deepcopy(run.output),
            "conversation_id": self.conversation_id,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": dict(PCM_FORMAT), "voice": voice}},
            "usage": usage,
            "metadata": metadata,
        }

    async def _play(self, run: _ResponseRun, *, metadata: dict[str, str] | None) -> None:
        """Generate one scripted response, event by event, honouring cancellation."""
        try:
            spec = run.spec
            calls_mid = [c for c in spec.function_calls if c.at == "mid_audio"]
            calls_after = [c for c in spec.function_calls if c.at == "after_audio"]
            if spec.tool_only:
                calls_after = calls_mid + calls_after
                calls_mid = []
                await run.wait(spec.audio_delay_ms / 1000)
            else:
                await self._play_audio(run, calls_mid=calls_mid)
            for call in calls_after:
                if run.cancelled:
                    break
                await self._emit_function_call(run, call)
            if not run.cancelled:
                await run.wait(spec.linger_ms / 1000)
            await self._finish_response(run, metadata=metadata)
        finally:
            if self._active is run:
                self._active = None

    async def _play_audio(self, run: _ResponseRun, *, calls_mid: list[FunctionCallSpec]) -> None:
        spec = run.spec
        spoken = spec.spoken(pitch_hz=self.scenario.session.voice_pitch_hz)
        assert spoken is not None
        output_index = len(run.output)
        item_id = self._ids.new("item")
        item: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        entry = ConversationEntry(item=item, response_id=run.response_id)
        previous = self.conversation.append(entry)
        run.output.append(item)
        where: dict[str, Any] = {
            "response_id": run.response_id,
            "item_id": item_id,
            "output_index": output_index,
        }
        await self._emit(
            "response.output_item.added",
            response_id=run.response_id,
            output_index=output_index,
            item=copy.deepcopy(item),
        )
        await self._emit(
            "conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)
        )
        await self._emit(
            "response.content_part.added",
            **where,
            content_index=0,
            part={"type": "audio", "transcript": ""},
        )
        await run.wait(spec.audio_delay_ms / 1000)

        generated = self._generated.setdefault(item_id, bytearray())
        total_ms = spoken.duration_ms
        pending_calls = sorted(calls_mid, key=lambda c: c.fraction or 0.0)
        words = list(spoken.words)
        transcript_parts: list[str] = []
        clock_start = asyncio.get_running_loop().time()
        speed = self.scenario.session.generation_speed
        for start, end in self._chunk_plan(len(spoken.pcm), seed=run.script_index):
            if run.cancelled:
                break
            start_ms, end_ms = start / BYTES_PER_MS, end / BYTES_PER_MS
            if spec.drop_at_fraction is not None and start_ms >= spec.drop_at_fraction * total_ms:
                await self.drop()
                raise _ConnectionGone
            while pending_calls and (pending_calls[0].fraction or 0.0) * total_ms < end_ms:
                await self._emit_function_call(run, pending_calls.pop(0))
            while words and words[0].start_ms < end_ms:
                word = words.pop(0)
                transcript_parts.append(word.text)
                await self._emit(
                    "response.output_audio_transcript.delta",
                    **where,
                    content_index=0,
                    delta=word.text,
                )
            chunk = spoken.pcm[start:end]

            def count_as_generated(chunk: bytes = chunk) -> None:
                generated.extend(chunk)
                entry.audio.extend(chunk)

            await self._emit(
                "response.output_audio.delta",
                before_send=count_as_generated,
                **where,
                content_index=0,
                delta=base64.b64encode(chunk).decode("ascii"),
            )
            if self.realtime_pacing:
                due = clock_start + end_ms / 1000 / speed
                await run.wait(due - asyncio.get_running_loop().time())
            else:
                await asyncio.sleep(0)  # let client events (cancel, barge-in) be handled

        transcript = "".join(transcript_parts)
        run.transcript = transcript
        run.audio_ms = len(generated) // BYTES_PER_MS
        await self._emit("response.output_audio.done", **where, content_index=0)
        await self._emit(
            "response.output_audio_transcript.done", **where, content_index=0, transcript=transcript
        )
        await self._emit(
            "response.content_part.done",
            **where,
            content_index=0,
            part={"type": "audio", "transcript": transcript},
        )
        item["status"] = "incomplete" if run.cancelled else "completed"
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        await self._emit(
            "response.output_item.done",
            response_id=run.response_id,
            output_index=output_index,
            item=copy.deepcopy(item),
        )
        await self._emit(
            "conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)
        )

    def _chunk_plan(self, total_bytes: int, *, seed: int) -> list[tuple[int, int]]:
        """Delta boundaries: sizes vary within the scenario's range, on whole samples."""
        low, high = self.scenario.session.audio_delta_ms
        rng = random.Random(f"chunks:{seed}")
        plan: list[tuple[int, int]] = []
        position = 0
        while position < total_bytes:
            size = rng.randint(low, high) * BYTES_PER_MS
            plan.append((position, min(total_bytes, position + size)))
            position += size
        return plan

    async def _emit_function_call(self, run: _ResponseRun, call: FunctionCallSpec) -> None:
        output_index = len(run.output)
        item_id = self._ids.new("item")
        call_id = call.call_id or self._ids.new("call")
        item: dict[str, Any] = {
            "id": item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": call.name,
            "call_id": call_id,
            "arguments": "",
        }
        previous = self.conversation.append(
            ConversationEntry(item=item, response_id=run.response_id)
        )
        run.output.append(item)
        await self._emit(
            "response.output_item.added",
            response_id=run.response_id,
            output_index=output_index,
            item=copy.deepcopy(item),
        )
        await self._emit(
            "conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item)
        )
        where: dict[str, Any] = {
            "response_id": run.response_id,
            "item_id": item_id,
            "output_index": output_index,
            "call_id": call_id,
        }
        arguments = call.arguments
        for offset in range(0, len(arguments), _ARGUMENT_DELTA_CHARS):
            await self._emit(
                "response.function_call_arguments.delta",
                **where,
                delta=arguments[offset : offset + _ARGUMENT_DELTA_CHARS],
            )
        await self._emit(
            "response.function_call_arguments.done", **where, name=call.name, arguments=arguments
        )
        item["arguments"] = arguments
        item["status"] = "completed"
        run.arguments_text += arguments
        await self._emit(
            "response.output_item.done",
            response_id=run.response_id,
            output_index=output_index,
            item=copy.deepcopy(item),
        )
        await self._emit(
            "conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item)
        )

    async def _finish_response(self, run: _ResponseRun, *, metadata: dict[str, str] | None) -> None:
        input_usage = run.input_usage
        output_usage = output_token_usage(
            audio_ms=run.audio_ms, transcript=run.transcript, arguments=run.arguments_text
        )
        input_tokens = input_usage["text_tokens"] + input_usage["audio_tokens"]
        output_tokens = output_usage["text_tokens"] + output_usage["audio_tokens"]
        usage = {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                **input_usage,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": output_usage,
        }
        status = "cancelled" if run.cancelled else "completed"

        def no_longer_active() -> None:
            # Under the send lock: a response.create handled after this point is ordered after
            # response.done on the wire, as on the real server.
            if self._active is run:
                self._active = None

        await self._emit(
            "response.done",
            before_send=no_longer_active,
            response=self._response_object(run, metadata=metadata, status=status, usage=usage),
        )
        if self._script.count_done_and_check_drop():
            await self.drop()
