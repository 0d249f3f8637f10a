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
import contextlib
import copy
import json
import logging
import random
import re
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
    estimate_text_tokens,
    output_token_usage,
)
from services.realtime.simulator.g711 import G711Law, g711_to_pcm24k, pcm24k_to_g711
from services.realtime.simulator.scenario import (
    FunctionCallSpec,
    ResponseSpec,
    Scenario,
    UserUtterance,
    draw_generation_speed,
)
from services.realtime.simulator.vad import (
    EnergyVad,
    SpeechStarted,
    VadSettings,
    semantic_silence_ms,
)
from services.realtime.simulator.voice import BYTES_PER_MS

if TYPE_CHECKING:
    from services.realtime.simulator.server import ScriptCursor

__all__ = ["SimulatorBug", "SimulatorSession", "WireRecord"]

log = logging.getLogger(__name__)

PCM_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
_MIN_COMMIT_MS = 100
_ARGUMENT_DELTA_CHARS = 24
_ID_ALPHABET = string.ascii_letters + string.digits
_TEXT_MS_PER_WORD = 40.0  # text generation at 1x: about 25 words a second
_LATE_TRANSCRIPT_WAIT_S = 0.3  # after_response order with no response coming: give up waiting
_LATE_TRANSCRIPT_DELAY_MS = (0, 250)  # realtime pacing: transcription latency after the response
_USER_AUDIO_MS_PER_TOKEN = 100
CancelReason = Literal["turn_detected", "client_cancelled"]
EndStatus = Literal["completed", "cancelled", "incomplete", "failed"]
_DEFAULT_FAILURE: dict[str, str] = {
    "type": "server_error",
    "code": "server_error",
    "message": "The server had an error while processing your request. Sorry about that!",
}


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


@dataclass(frozen=True, slots=True, kw_only=True)
class _ResponseOptions:
    """What `response.create` (or the session, for an automatic response) asks of one response."""

    modalities: tuple[str, ...] = ("audio",)
    out_of_band: bool = False  # conversation "none": no items added, conversation_id null
    max_output_tokens: int | Literal["inf"] = "inf"
    metadata: dict[str, str] | None = None


class _ResponseRun:
    def __init__(
        self,
        *,
        response_id: str,
        spec: ResponseSpec,
        script_index: int,
        options: _ResponseOptions,
        generation_speed: float,
    ) -> None:
        self.response_id = response_id
        self.spec = spec
        self.script_index = script_index
        self.options = options
        self.generation_speed = generation_speed
        self.cancel_reason: CancelReason | None = None
        # Where output stops short (0..1 of the audio or text) and how the response then ends.
        self.stop_fraction: float | None = None
        self.end_status: EndStatus = "completed"
        self.end_reason: str | None = None
        self.end_error: dict[str, str] | None = None
        self.stopped = False  # output was cut at stop_fraction
        self.first_audio_at: float | None = None
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
        "include": None,
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

    def __init__(
        self, *, code: str, message: str, param: str | None = None, echo_event_id: bool = True
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        # The real server leaves error.event_id null for some refusals even when the client
        # event had an id (cannot_update_voice, a truncate past the audio's end).
        self.echo_event_id = echo_event_id


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
        validate_first: int | None = None,
    ) -> None:
        self.index = index
        self._validate_first = validate_first  # see SimulatorServer
        self._received_counts: Counter[str] = Counter()
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
        self._seed = scenario.session.seed
        self._noise = random.Random(f"obfuscation:{self._seed}:{index}")
        self.session_id = self._ids.new("sess")
        self._expires_at = int(time.time() + scenario.session.lifetime_s)
        self.response_speeds: dict[str, float] = {}
        """Generation speed each response was paced at (realtime pacing), by response id."""
        self._assistant_audio_sent = False
        self._idle_timer: asyncio.Task[None] | None = None
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
            await self._emit("session.created", session=self._session_payload())
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

    def _session_payload(self) -> dict[str, Any]:
        """The session as the server reports it: the configuration plus its identity."""
        return {
            "id": self.session_id,
            "object": "realtime.session",
            "expires_at": self._expires_at,
            **copy.deepcopy(self.session_config),
        }

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
        if self._validate_first is None or self._sent_counts[event_type] < self._validate_first:
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
        if self._checks_received(data):
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
                client_event_id=client_event_id if refusal.echo_event_id else None,
            )

    def _checks_received(self, data: Any) -> bool:
        """Whether this client event is validated: always, unless `validate_first` limits it to
        the first few of each type (anything not a JSON object with a string type is checked)."""
        if self._validate_first is None:
            return True
        kind = data.get("type") if isinstance(data, dict) else None
        if not isinstance(kind, str):
            return True
        self._received_counts[kind] += 1
        return self._received_counts[kind] <= self._validate_first

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
            if audio_format.get("type", "audio/pcm") not in AUDIO_FORMATS:
                raise _ClientError(
                    code="invalid_value",
                    message="Supported audio formats are audio/pcm (24 kHz), audio/pcmu and "
                    "audio/pcma (8 kHz).",
                    param=f"session.audio.{direction}.format.type",
                )
        old_voice = self.session_config.get("audio", {}).get("output", {}).get("voice")
        new_voice = merged.get("audio", {}).get("output", {}).get("voice")
        if new_voice != old_voice and self._assistant_audio_sent:
            raise _ClientError(
                code="cannot_update_voice",
                message="Cannot update a conversation's voice if assistant audio is present.",
                echo_event_id=False,
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
        self._prime_semantic_vad()
        await self._emit("session.updated", session=self._session_payload())
        if self._active is None and not self._vad.speaking:
            self._arm_idle_timer(after_s=0.0)

    def _turn_detection(self) -> dict[str, Any] | None:
        audio_input = self.session_config.get("audio", {}).get("input", {})
        turn_detection = audio_input.get("turn_detection")
        return turn_detection if isinstance(turn_detection, dict) else None

    def _audio_format(self, direction: Literal["input", "output"]) -> str:
        audio_format = self.session_config.get("audio", {}).get(direction, {}).get("format") or {}
        return str(audio_format.get("type", "audio/pcm"))

    def _to_wire_audio(self, pcm: bytes, direction: Literal["input", "output"]) -> bytes:
        """Internal PCM16 at 24 kHz as the session's format for `direction` carries it."""
        audio_format = self._audio_format(direction)
        if audio_format == "audio/pcm":
            return pcm
        law: G711Law = "audio/pcmu" if audio_format == "audio/pcmu" else "audio/pcma"
        return pcm24k_to_g711(pcm, law)

    def _prime_semantic_vad(self) -> None:
        """Semantic VAD: choose the next turn's end-of-turn silence from what the user is
        scripted to say (a finished sentence ends sooner than a trailing one)."""
        turn_detection = self._turn_detection()
        if turn_detection is None or turn_detection.get("type") != "semantic_vad":
            self._vad.set_turn_silence(None)
            return
        upcoming = self._script.peek_utterance()
        eagerness = str(turn_detection.get("eagerness") or "auto")
        self._vad.set_turn_silence(
            semantic_silence_ms(eagerness, upcoming.text if upcoming else None)
        )

    # ----------------------------------------------------------------- idle timeout

    def _arm_idle_timer(self, *, after_s: float) -> None:
        """server_vad `idle_timeout_ms`: with no speech for that long after the last response's
        audio would have finished playing (`after_s` from now), the server commits the buffer,
        sends `input_audio_buffer.timeout_triggered` and responds."""
        self._disarm_idle_timer()
        turn_detection = self._turn_detection()
        if turn_detection is None or turn_detection.get("type") != "server_vad":
            return
        idle_ms = turn_detection.get("idle_timeout_ms")
        if not idle_ms:
            return
        self._idle_timer = self._start_task(
            self._idle_timeout(after_s + idle_ms / 1000, since_ms=self._vad.position_ms)
        )

    def _disarm_idle_timer(self) -> None:
        timer, self._idle_timer = self._idle_timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _idle_timeout(self, seconds: float, *, since_ms: int) -> None:
        await asyncio.sleep(seconds)
        if self._idle_timer is not asyncio.current_task():
            return
        self._idle_timer = None
        turn_detection = self._turn_detection()
        if self._active is not None or self._vad.speaking or turn_detection is None:
            return
        item_id = self._ids.new("item")
        await self._emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=since_ms,
            audio_end_ms=max(since_ms, self._vad.position_ms),
            item_id=item_id,
        )
        self._vad.reset(at_ms=self._vad.position_ms)
        await self._commit(item_id=item_id, spoken=False)
        if turn_detection.get("create_response") and self._active is None:
            await self._start_response(request=None)

    async def _on_append(self, event: dict[str, Any]) -> None:
        try:
            raw = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _ClientError(
                code="invalid_value",
                message="Invalid 'audio': expected base64-encoded audio in the session's format.",
                param="audio",
            ) from exc
        self.input_audio.extend(raw)
        audio_format = self._audio_format("input")
        if audio_format == "audio/pcm":
            pcm = raw
        else:
            pcm = g711_to_pcm24k(
                raw, "audio/pcmu" if audio_format == "audio/pcmu" else "audio/pcma"
            )
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
                    await self._start_response(request=None)

    async def _on_speech_started(self, audio_start_ms: int, turn_detection: dict[str, Any]) -> None:
        self._disarm_idle_timer()
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

    async def _commit(self, *, item_id: str, spoken: bool = True) -> None:
        """Commit the buffer as a user item. `spoken` False (an idle timeout) takes no line
        from the script: the user said nothing."""
        self._disarm_idle_timer()
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
        await self._emit_item("conversation.item.added", item, previous_item_id=previous)
        await self._emit_item("conversation.item.done", item, previous_item_id=previous)
        # Each committed turn is the next scripted utterance, transcribed or not, so the script
        # stays aligned if transcription is switched on later.
        taken = self._script.take_utterance() if spoken else None
        self._prime_semantic_vad()
        transcription = self.session_config.get("audio", {}).get("input", {}).get("transcription")
        if not transcription or taken is None:
            return
        index, utterance = taken
        model = str(transcription.get("model") or "whisper-1")
        audio_ms = len(audio) // BYTES_PER_MS
        if self._transcribes_first(index):
            await self._transcribe(item, utterance, model=model, audio_ms=audio_ms)
        else:
            responses_so_far = self._sent_counts["response.created"]
            self._start_task(
                self._transcribe_late(
                    item, utterance, model=model, audio_ms=audio_ms, after=responses_so_far
                )
            )

    def _transcribes_first(self, utterance_index: int) -> bool:
        """Transcription runs beside the response on the real server: before or after
        `response.created`, drawn per turn from the scenario's seed unless it pins an order."""
        order = self.scenario.session.transcription_order
        if order != "seeded":
            return order == "before_response"
        return random.Random(f"transcription:{self._seed}:{utterance_index}").random() < 0.5

    async def _transcribe_late(
        self,
        item: dict[str, Any],
        utterance: UserUtterance,
        *,
        model: str,
        audio_ms: int,
        after: int,
    ) -> None:
        """Wait for the response this turn starts (if one comes soon), then transcribe."""
        with contextlib.suppress(TimeoutError):
            async with self._wire_changed:
                await asyncio.wait_for(
                    self._wire_changed.wait_for(
                        lambda: self._sent_counts["response.created"] > after
                    ),
                    timeout=_LATE_TRANSCRIPT_WAIT_S,
                )
        if self.realtime_pacing:
            low, high = _LATE_TRANSCRIPT_DELAY_MS
            delay = random.Random(f"transcription-delay:{self._seed}:{item['id']}").uniform(
                low, high
            )
            await asyncio.sleep(delay / 1000)
        await self._transcribe(item, utterance, model=model, audio_ms=audio_ms, interleave=True)

    async def _transcribe(
        self,
        item: dict[str, Any],
        utterance: UserUtterance,
        *,
        model: str,
        audio_ms: int,
        interleave: bool = False,
    ) -> None:
        item_id = str(item["id"])
        if utterance.transcription == "failed":
            await self._emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={
                    "type": "invalid_request_error",
                    "code": "audio_unintelligible",
                    "message": "Audio could not be transcribed.",
                    "param": None,
                },
            )
            return
        transcript = utterance.text
        words = transcript.split(" ")
        # whisper-1 is not incremental: its one delta is the whole transcript.
        pieces = (
            [transcript]
            if model == "whisper-1"
            else [words[0], *(f" {word}" for word in words[1:])]
        )
        for piece in pieces:
            await self._emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=piece,
                obfuscation=self._obfuscation(piece),
            )
            if interleave:
                await asyncio.sleep(0)  # let response events in between, as on the real server
        if "diarize" in model:
            await self._emit_segments(item_id, utterance, audio_ms=audio_ms)
        item["content"][0]["transcript"] = transcript
        await self._emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage=self._transcription_usage(model, transcript=transcript, audio_ms=audio_ms),
        )

    def _obfuscation(self, delta: str) -> str:
        """Random padding the real server adds to streamed deltas so their sizes do not reveal
        the text (https://platform.openai.com: `obfuscation` on stream events)."""
        length = max(0, 16 - len(delta)) + self._noise.randint(0, 4)
        return "".join(self._noise.choice(_ID_ALPHABET) for _ in range(length))

    async def _emit_segments(
        self, item_id: str, utterance: UserUtterance, *, audio_ms: int
    ) -> None:
        """Diarized transcription: one segment per sentence, timed by its share of the text."""
        sentences = [part.strip() for part in re.split(r"(?<=[.!?])\s+", utterance.text)]
        sentences = [sentence for sentence in sentences if sentence]
        total_chars = sum(len(sentence) for sentence in sentences) or 1
        position = 0
        for number, sentence in enumerate(sentences):
            start = audio_ms * position / total_chars / 1000
            position += len(sentence)
            await self._emit(
                "conversation.item.input_audio_transcription.segment",
                item_id=item_id,
                content_index=0,
                id=f"seg_{number:04d}",
                speaker=utterance.speaker,
                start=round(start, 3),
                end=round(audio_ms * position / total_chars / 1000, 3),
                text=sentence,
            )

    @staticmethod
    def _transcription_usage(model: str, *, transcript: str, audio_ms: int) -> dict[str, Any]:
        """whisper-1 is billed by duration; the gpt-4o transcribe models by tokens."""
        if model == "whisper-1":
            return {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
        audio_tokens = audio_ms // _USER_AUDIO_MS_PER_TOKEN
        output_tokens = estimate_text_tokens(transcript)
        return {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
        }

    async def _on_clear(self, event: dict[str, Any]) -> None:
        self._buffer.clear()
        self._speech_item_id = None
        self._prime_semantic_vad()
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
        await self._emit_item("conversation.item.added", item, previous_item_id=previous)
        await self._emit_item("conversation.item.done", item, previous_item_id=previous)

    async def _on_item_truncate(self, event: dict[str, Any]) -> None:
        item_id = event["item_id"]
        audio_end_ms = event["audio_end_ms"]
        if audio_end_ms < 0:
            raise _ClientError(
                code="integer_below_min_value",
                message=(
                    "Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, "
                    f"but got {audio_end_ms} instead."
                ),
                param="audio_end_ms",
            )
        entry = self.conversation.get(item_id)
        if entry is None:
            raise _ClientError(
                code="item_truncate_invalid_item_id",
                message=f"Item with item_id not found: {item_id}",
                param="item_id",
            )
        if not entry.is_assistant_audio or audio_end_ms == 0:
            # At 0 ms the real server answers as if the item held no audio at all.
            raise _ClientError(
                code="unsupported_content_type",
                message="Only model output audio messages can be truncated",
                param="item_id",
            )
        if event["content_index"] != 0:
            raise _ClientError(
                code="invalid_value",
                message=f"Invalid content_index {event['content_index']}: the item has one part.",
                param="content_index",
            )
        if audio_end_ms > entry.audio_ms:
            # The real server reports the overshoot (with a null event_id), then truncates at the
            # audio's end anyway and confirms it.
            await self._emit_error(
                code="invalid_value",
                message=(
                    f"Audio content of {entry.audio_ms}ms is already shorter than {audio_end_ms}ms"
                ),
                param="audio_end_ms",
            )
            audio_end_ms = entry.audio_ms
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
                kind = part.get("type")
                if kind in {"input_audio", "output_audio"}:
                    direction: Literal["input", "output"] = (
                        "input" if kind == "input_audio" else "output"
                    )
                    audio = self._to_wire_audio(bytes(entry.audio), direction)
                    part["audio"] = base64.b64encode(audio).decode("ascii")
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
        await self._start_response(request=event.get("response") or {})

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

    def _response_options(self, request: dict[str, Any] | None) -> _ResponseOptions:
        """The response's parameters: `response.create`'s, else the session's."""
        request = request or {}
        modalities = request.get("output_modalities") or self.session_config.get(
            "output_modalities"
        )
        limit = request.get("max_output_tokens", self.session_config.get("max_output_tokens"))
        return _ResponseOptions(
            modalities=tuple(modalities or ("audio",)),
            out_of_band=request.get("conversation") == "none",
            max_output_tokens=limit if isinstance(limit, int) else "inf",
            metadata=request.get("metadata"),
        )

    def _generation_speed(self, spec: ResponseSpec, script_index: int) -> float:
        setting = spec.generation_speed
        if setting is None:
            setting = self.scenario.session.generation_speed
        return draw_generation_speed(setting, seed=self._seed, response_index=script_index)

    async def _start_response(self, *, request: dict[str, Any] | None) -> None:
        self._disarm_idle_timer()
        script_index, spec = self._script.take_response()
        options = self._response_options(request)
        run = _ResponseRun(
            response_id=self._ids.new("resp"),
            spec=spec,
            script_index=script_index,
            options=options,
            generation_speed=self._generation_speed(spec, script_index),
        )
        self._plan_ending(run)
        if self.realtime_pacing:
            self.response_speeds[run.response_id] = run.generation_speed
        instructions = str(self.session_config.get("instructions") or "")
        # Billed on the conversation as it stood when the response began (an out-of-band
        # response sees only its instructions and its own input).
        if options.out_of_band:
            run.input_usage = {"text_tokens": estimate_text_tokens(instructions), "audio_tokens": 0}
        else:
            run.input_usage = self.conversation.input_token_usage(instructions=instructions)
        self._active = run
        limits = self._script.rate_limits
        limits.record("requests", 1)
        limits.record("tokens", run.input_usage["text_tokens"] + run.input_usage["audio_tokens"])
        await self._emit("response.created", response=self._response_object(run))
        await self._emit("rate_limits.updated", rate_limits=limits.snapshot())
        run.task = self._start_task(self._play(run))

    def _plan_ending(self, run: _ResponseRun) -> None:
        """Where this response stops short, if it does: the scenario's `ending`, or
        `max_output_tokens` smaller than what the scripted response would need."""
        spec = run.spec
        if spec.ending is not None:
            run.stop_fraction = spec.ending.at_fraction
            run.end_status = spec.ending.status
            run.end_reason = spec.ending.reason
            if spec.ending.status == "failed":
                run.end_error = {**_DEFAULT_FAILURE, **(spec.ending.error or {})}
        limit = run.options.max_output_tokens
        if limit == "inf":
            return
        needed = self._scripted_output_tokens(run)
        if needed > limit:
            fraction = limit / needed
            if run.stop_fraction is None or fraction < run.stop_fraction:
                run.stop_fraction = fraction
                run.end_status = "incomplete"
                run.end_reason = "max_output_tokens"
                run.end_error = None

    def _scripted_output_tokens(self, run: _ResponseRun) -> int:
        spec = run.spec
        arguments = "".join(call.arguments for call in spec.function_calls)
        if spec.say is None:
            usage = output_token_usage(audio_ms=0, transcript="", arguments=arguments)
        elif "audio" in run.options.modalities:
            spoken = spec.spoken(pitch_hz=self.scenario.session.voice_pitch_hz)
            assert spoken is not None
            usage = output_token_usage(
                audio_ms=int(spoken.duration_ms), transcript=spec.say, arguments=arguments
            )
        else:
            usage = output_token_usage(audio_ms=0, transcript=spec.say, arguments=arguments)
        return usage["text_tokens"] + usage["audio_tokens"]

    def _response_object(
        self,
        run: _ResponseRun,
        *,
        status: str = "in_progress",
        usage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        voice = self.session_config.get("audio", {}).get("output", {}).get("voice", "marin")
        output_format = self.session_config.get("audio", {}).get("output", {}).get("format")
        status_details: dict[str, Any] | None = None
        if status == "cancelled":
            status_details = {"type": "cancelled", "reason": run.cancel_reason}
        elif status == "incomplete":
            status_details = {"type": "incomplete", "reason": run.end_reason}
        elif status == "failed":
            status_details = {"type": "failed", "error": dict(run.end_error or _DEFAULT_FAILURE)}
        return {
            "object": "realtime.response",
            "id": run.response_id,
            "status": status,
            "status_details": status_details,
            "output": copy.deepcopy(run.output),
            "conversation_id": None if run.options.out_of_band else self.conversation_id,
            "output_modalities": list(run.options.modalities),
            "max_output_tokens": run.options.max_output_tokens,
            "audio": {"output": {"format": dict(output_format or PCM_FORMAT), "voice": voice}},
            "usage": usage,
            "metadata": run.options.metadata,
        }

    async def _play(self, run: _ResponseRun) -> None:
        """Generate one scripted response, event by event, honouring cancellation."""
        try:
            spec = run.spec
            calls_mid = [c for c in spec.function_calls if c.at == "mid_audio"]
            calls_after = [c for c in spec.function_calls if c.at == "after_audio"]
            if spec.tool_only or run.stop_fraction == 0:
                calls_after = calls_mid + calls_after
                calls_mid = []
                await run.wait(spec.audio_delay_ms / 1000)
                run.stopped = run.stop_fraction is not None and run.stop_fraction < 1
            elif "audio" in run.options.modalities:
                await self._play_audio(run, calls_mid=calls_mid)
            else:
                await self._play_text(run, calls_mid=calls_mid)
            for call in calls_after:
                if run.cancelled or run.stopped:
                    break
                await self._emit_function_call(run, call)
            if not run.cancelled:
                await run.wait(spec.linger_ms / 1000)
            await self._finish_response(run)
        finally:
            if self._active is run:
                self._active = None

    async def _open_message(self, run: _ResponseRun, *, part_type: str) -> _OpenMessage:
        """The assistant message item and its one content part, announced."""
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
        message = _OpenMessage(item=item, entry=entry, output_index=output_index)
        run.output.append(item)
        await self._emit(
            "response.output_item.added",
            response_id=run.response_id,
            output_index=output_index,
            item=copy.deepcopy(item),
        )
        if not run.options.out_of_band:
            message.previous = self.conversation.append(entry)
            await self._emit_item(
                "conversation.item.added", item, previous_item_id=message.previous
            )
        empty_part = {"type": "audio", "transcript": ""} if part_type == "audio" else None
        await self._emit(
            "response.content_part.added",
            **message.where(run),
            content_index=0,
            part=empty_part or {"type": "text", "text": ""},
        )
        return message

    async def _close_message(
        self, run: _ResponseRun, message: _OpenMessage, *, part: dict[str, Any]
    ) -> None:
        item = message.item
        await self._emit(
            "response.content_part.done", **message.where(run), content_index=0, part=part
        )
        item["status"] = "incomplete" if run.cancelled or run.stopped else "completed"
        if part["type"] == "audio":
            item["content"] = [{"type": "output_audio", "transcript": part["transcript"]}]
        else:
            item["content"] = [{"type": "output_text", "text": part["text"]}]
        await self._emit(
            "response.output_item.done",
            response_id=run.response_id,
            output_index=message.output_index,
            item=copy.deepcopy(item),
        )
        if not run.options.out_of_band:
            await self._emit_item("conversation.item.done", item, previous_item_id=message.previous)

    async def _play_text(self, run: _ResponseRun, *, calls_mid: list[FunctionCallSpec]) -> None:
        """`output_modalities: ["text"]`: the scripted line as `response.output_text.*`."""
        spec = run.spec
        assert spec.say is not None
        message = await self._open_message(run, part_type="text")
        await run.wait(spec.audio_delay_ms / 1000)
        words = [f" {word}" if index else word for index, word in enumerate(spec.say.split(" "))]
        stop_at = len(words) if run.stop_fraction is None else int(len(words) * run.stop_fraction)
        pending_calls = sorted(calls_mid, key=lambda c: c.fraction or 0.0)
        sent: list[str] = []
        for index, word in enumerate(words):
            if run.cancelled:
                break
            if index >= stop_at:
                run.stopped = True
                break
            while pending_calls and (pending_calls[0].fraction or 0.0) * len(words) <= index:
                await self._emit_function_call(run, pending_calls.pop(0))
            await self._emit(
                "response.output_text.delta", **message.where(run), content_index=0, delta=word
            )
            sent.append(word)
            if self.realtime_pacing:
                await run.wait(_TEXT_MS_PER_WORD / 1000 / run.generation_speed)
            else:
                await asyncio.sleep(0)
        text = "".join(sent)
        run.transcript = text
        await self._emit(
            "response.output_text.done", **message.where(run), content_index=0, text=text
        )
        await self._close_message(run, message, part={"type": "text", "text": text})

    async def _play_audio(self, run: _ResponseRun, *, calls_mid: list[FunctionCallSpec]) -> None:
        spec = run.spec
        spoken = spec.spoken(pitch_hz=self.scenario.session.voice_pitch_hz)
        assert spoken is not None
        message = await self._open_message(run, part_type="audio")
        where = message.where(run)
        entry = message.entry
        await run.wait(spec.audio_delay_ms / 1000)

        generated = self._generated.setdefault(message.item["id"], bytearray())
        total_ms = spoken.duration_ms
        stop_ms = None if run.stop_fraction is None else run.stop_fraction * total_ms
        pending_calls = sorted(calls_mid, key=lambda c: c.fraction or 0.0)
        words = list(spoken.words)
        transcript_parts: list[str] = []
        clock_start = asyncio.get_running_loop().time()
        speed = run.generation_speed
        for start, end in self._chunk_plan(len(spoken.pcm), seed=run.script_index):
            if run.cancelled:
                break
            start_ms, end_ms = start / BYTES_PER_MS, end / BYTES_PER_MS
            if stop_ms is not None and start_ms >= stop_ms:
                run.stopped = True
                break
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
            wire_chunk = self._to_wire_audio(chunk, "output")

            def count_as_generated(chunk: bytes = chunk, wire_chunk: bytes = wire_chunk) -> None:
                generated.extend(wire_chunk)
                entry.audio.extend(chunk)
                self._assistant_audio_sent = True

            if run.first_audio_at is None:
                run.first_audio_at = asyncio.get_running_loop().time()
            await self._emit(
                "response.output_audio.delta",
                before_send=count_as_generated,
                **where,
                content_index=0,
                delta=base64.b64encode(wire_chunk).decode("ascii"),
            )
            if self.realtime_pacing:
                due = clock_start + end_ms / 1000 / speed
                await run.wait(due - asyncio.get_running_loop().time())
            else:
                await asyncio.sleep(0)  # let client events (cancel, barge-in) be handled

        transcript = "".join(transcript_parts)
        run.transcript = transcript
        run.audio_ms = entry.audio_ms
        await self._emit("response.output_audio.done", **where, content_index=0)
        await self._emit(
            "response.output_audio_transcript.done", **where, content_index=0, transcript=transcript
        )
        await self._close_message(run, message, part={"type": "audio", "transcript": transcript})

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
        previous: str | None = None
        if not run.options.out_of_band:
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
        if not run.options.out_of_band:
            await self._emit_item("conversation.item.added", item, previous_item_id=previous)
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
        if not run.options.out_of_band:
            await self._emit_item("conversation.item.done", item, previous_item_id=previous)

    async def _finish_response(self, run: _ResponseRun) -> None:
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
        self._script.rate_limits.record("tokens", output_tokens)
        status: EndStatus = "cancelled" if run.cancelled else run.end_status

        def no_longer_active() -> None:
            # Under the send lock: a response.create handled after this point is ordered after
            # response.done on the wire, as on the real server.
            if self._active is run:
                self._active = None

        await self._emit(
            "response.done",
            before_send=no_longer_active,
            response=self._response_object(run, status=status, usage=usage),
        )
        playback_left = 0.0
        if run.first_audio_at is not None:
            played_until = run.first_audio_at + run.audio_ms / 1000
            playback_left = max(0.0, played_until - asyncio.get_running_loop().time())
        if self._active is None and not self._vad.speaking:
            self._arm_idle_timer(after_s=playback_left)
        if self._script.count_done_and_check_drop():
            await self.drop()


@dataclass(slots=True)
class _OpenMessage:
    """An assistant message being generated: its item, conversation entry and position."""

    item: dict[str, Any]
    entry: ConversationEntry
    output_index: int
    previous: str | None = None

    def where(self, run: _ResponseRun) -> dict[str, Any]:
        return {
            "response_id": run.response_id,
            "item_id": self.item["id"],
            "output_index": self.output_index,
        }
