"""The model link: one Realtime WebSocket, opened through the official `openai` SDK.

It goes to OpenAI when an API key is given and to the local simulator otherwise; both speak the
same GA protocol, so nothing above this module knows which one it has. The gateway records the
link's traffic byte for byte, so:

- `send()` serialises the event once, sends that text, and returns it; `append_audio()` builds
  its text directly (50 a second per session: no dict, no encoder pass). What Earpiece sends it
  builds itself, so checking every event against the SDK's client types (a bug in Earpiece
  fails there, before the model sees it) is for the test suite, which turns it on
  (`EARPIECE_VALIDATE_SENT=1`), not a cost paid per frame in production;
- `events()` yields every server event as the exact text received (read with the SDK's
  `recv_bytes`, never re-serialised), including types this code does not know;
- a dropped socket ends `events()` with `ModelLinkClosed`, so the caller always learns why.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, NamedTuple

from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

from services.realtime.protocol import validate_client_event
from services.runtime.config import Settings

__all__ = [
    "DEFAULT_TRANSCRIPTION_MODEL",
    "ErrorSeverity",
    "ModelLink",
    "ModelLinkClosed",
    "ModelLinkConnectFailed",
    "ServerEvent",
    "build_session_update",
    "classify_error",
]

log = logging.getLogger(__name__)

DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"
PCM_24K: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
UNPARSEABLE_EVENT_TYPE = "<unparseable>"
"""`event_type` yielded for a server message that is not a JSON object with a string `type`."""

ErrorSeverity = Literal["recoverable", "fatal"]

_FATAL_ERROR_CODES = frozenset(
    {
        "session_expired",
        "invalid_api_key",
        "insufficient_quota",
        "model_not_found",
        "invalid_model",
        "organization_deactivated",
        "account_deactivated",
        "unauthorized",
        "forbidden",
        "session_closed",
    }
)
_FATAL_ERROR_TYPES = frozenset({"authentication_error", "permission_error", "insufficient_quota"})


APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
"""How every `input_audio_buffer.append` Earpiece sends begins (see `ModelLink.append_audio`)."""


def validate_sent_default() -> bool:
    """Whether links check what they send against the SDK's types (`EARPIECE_VALIDATE_SENT`)."""
    return os.environ.get("EARPIECE_VALIDATE_SENT", "") not in ("", "0", "false")


class ModelLinkClosed(Exception):
    """The link is gone: the socket dropped, the server closed it, or it never opened."""

    def __init__(self, *, reason: str, code: int | None = None) -> None:
        super().__init__(f"model link closed: {reason}" + (f" (code {code})" if code else ""))
        self.reason = reason
        self.code = code


class ModelLinkConnectFailed(ModelLinkClosed):
    """The WebSocket could not be opened (refused, rejected handshake, timeout)."""


class ServerEvent(NamedTuple):
    raw_text: str
    """The message exactly as received."""
    event_type: str
    data: dict[str, Any]


def classify_error(data: Mapping[str, Any]) -> ErrorSeverity:
    """Whether a server `error` event leaves the session usable.

    Accepts the whole event or its `error` object. Request-level refusals (a race on
    `response.create`, a cancel with nothing active, a bad value) are recoverable: the
    conversation is intact. Expiry, authentication and account problems are fatal: this
    connection cannot go on.
    """
    error = data.get("error", data)
    if not isinstance(error, Mapping):
        return "recoverable"
    code = str(error.get("code") or "")
    error_type = str(error.get("type") or "")
    if code in _FATAL_ERROR_CODES or error_type in _FATAL_ERROR_TYPES:
        return "fatal"
    return "recoverable"


def build_session_update(
    *,
    instructions: str,
    voice: str,
    tools: Sequence[Mapping[str, Any]] = (),
    transcription_model: str | None = DEFAULT_TRANSCRIPTION_MODEL,
    interrupt_response: bool = True,
) -> dict[str, Any]:
    """The GA `session.update` Earpiece always sends: PCM 24 kHz both ways, server VAD that
    never starts a response by itself (Earpiece places context first, then `response.create`),
    and function tools. Tools may omit `"type": "function"`."""
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": instructions,
            "audio": {
                "input": {
                    "format": dict(PCM_24K),
                    "transcription": (
                        {"model": transcription_model} if transcription_model is not None else None
                    ),
                    "turn_detection": {
                        "type": "server_vad",
                        "create_response": False,
                        "interrupt_response": interrupt_response,
                    },
                },
                "output": {"format": dict(PCM_24K), "voice": voice},
            },
            "tools": [{"type": "function", **tool} for tool in tools],
            "tool_choice": "auto",
        },
    }


class ModelLink:
    """One Realtime connection. Not reusable: after `close()` or a drop, make a new one."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        simulator_url: str | None = None,
        on_send: Callable[[str], None] | None = None,
        connect_timeout_s: float = 10.0,
        validate: bool | None = None,
    ) -> None:
        """`on_send` is called with each event's text under the send lock, just before it goes
        on the wire, so a log it writes has the wire's order even with concurrent senders.
        `validate`: check each sent event against the SDK's types (default: from the
        environment, see `validate_sent_default`)."""
        if api_key is None and simulator_url is None:
            raise ValueError("a model link needs an OpenAI API key or a simulator URL")
        self.model = model
        self.target: Literal["openai", "simulator"] = "openai" if api_key else "simulator"
        if api_key:
            self._client = AsyncOpenAI(api_key=api_key)
        else:
            self._client = AsyncOpenAI(api_key="simulator", websocket_base_url=simulator_url)
        self._on_send = on_send
        self._validate = validate_sent_default() if validate is None else validate
        self._connect_timeout_s = connect_timeout_s
        self._connection: AsyncRealtimeConnection | None = None
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._reading = False
        self._event_ids = itertools.count(1)
        self._event_id_prefix = f"evt_{secrets.token_hex(4)}_"

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_send: Callable[[str], None] | None = None
    ) -> ModelLink:
        """OpenAI when `OPENAI_API_KEY` is set, else the simulator at `EARPIECE_SIMULATOR_URL`."""
        return cls(
            model=settings.realtime_model,
            api_key=settings.openai_api_key,
            simulator_url=settings.simulator_url,
            on_send=on_send,
        )

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._closing

    async def connect(self) -> None:
        """Open the WebSocket. The first event (`session.created`) arrives through `events()`."""
        if self._connection is not None:
            raise RuntimeError("this model link is already connected")
        manager = self._client.realtime.connect(model=self.model)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                self._connection = await manager.enter()
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ModelLinkConnectFailed(reason=f"handshake rejected with HTTP {status}") from exc
        except (OSError, TimeoutError) as exc:
            raise ModelLinkConnectFailed(reason=f"cannot connect: {exc!r}") from exc
        log.info("model link open (%s, model %s)", self.target, self.model)

    async def close(self) -> None:
        """Close on purpose; `events()` then ends without an exception.

        The close handshake needs someone reading: a server blocked on a socket nobody reads
        never sees the close frame, and the handshake then waits out its timeout. So when no
        `events()` loop is reading, this reads (and discards) until the socket is closed.
        """
        self._closing = True
        connection = self._connection
        if connection is None:
            return
        if self._reading:
            await connection.close()
            return

        async def discard_until_closed() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await connection.recv_bytes()

        reader = asyncio.create_task(discard_until_closed())
        try:
            await connection.close()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def __aenter__(self) -> ModelLink:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Every server event in arrival order. Ends quietly after `close()`; raises
        `ModelLinkClosed` when the server closes or the socket drops."""
        connection = self._require_connection()
        while not self._closing:
            self._reading = True
            try:
                message = await connection.recv_bytes()
            except ConnectionClosed as exc:
                if self._closing:
                    return
                raise _closed_from(exc) from exc
            finally:
                self._reading = False
            raw_text = message.decode("utf-8") if isinstance(message, bytes) else str(message)
            event_type, data = _decode(raw_text)
            yield ServerEvent(raw_text, event_type, data)

    async def send(self, event: Mapping[str, Any]) -> str:
        """Send and return the exact text sent (validated against the SDK's GA client types
        when the link validates). An `event_id` is added when missing, so an `error` can be
        traced to its cause."""
        outgoing = dict(event)
        if "event_id" not in outgoing:
            outgoing["event_id"] = self.next_event_id()
        if self._validate:
            validate_client_event(outgoing)
        return await self._send_text(json.dumps(outgoing, separators=(",", ":")))

    def next_event_id(self) -> str:
        return f"{self._event_id_prefix}{next(self._event_ids)}"

    async def _send_text(self, text: str) -> str:
        connection = self._require_connection()
        async with self._send_lock:
            if self._on_send is not None:
                self._on_send(text)
            try:
                await connection.send_raw(text)
            except ConnectionClosed as exc:
                raise _closed_from(exc) from exc
        return text

    async def configure(
        self,
        *,
        instructions: str,
        voice: str,
        tools: Sequence[Mapping[str, Any]] = (),
        transcription_model: str | None = DEFAULT_TRANSCRIPTION_MODEL,
        interrupt_response: bool = True,
    ) -> str:
        """Send the session configuration (see `build_session_update`)."""
        return await self.send(
            build_session_update(
                instructions=instructions,
                voice=voice,
                tools=tools,
                transcription_model=transcription_model,
                interrupt_response=interrupt_response,
            )
        )

    async def append_audio(self, pcm: bytes, *, event_id: str | None = None) -> str:
        """Append PCM16 24 kHz mono audio to the input buffer. The text is formatted directly:
        base64 and Earpiece's event ids need no JSON escaping (an id that would is refused)."""
        if event_id is None:
            event_id = self.next_event_id()
        elif not _PLAIN_ID.fullmatch(event_id):
            raise ValueError(f"event id {event_id!r} must be letters, digits, '_', '-' or '.'")
        audio = base64.b64encode(pcm).decode("ascii")
        text = f'{APPEND_PREFIX}{audio}","event_id":"{event_id}"}}'
        if self._validate:
            validate_client_event(json.loads(text))
        return await self._send_text(text)

    async def commit_audio(self) -> str:
        return await self.send({"type": "input_audio_buffer.commit"})

    async def clear_audio(self) -> str:
        return await self.send({"type": "input_audio_buffer.clear"})

    async def create_response(self, *, response: Mapping[str, Any] | None = None) -> str:
        event: dict[str, Any] = {"type": "response.create"}
        if response is not None:
            event["response"] = dict(response)
        return await self.send(event)

    async def cancel_response(self, *, response_id: str | None = None) -> str:
        event: dict[str, Any] = {"type": "response.cancel"}
        if response_id is not None:
            event["response_id"] = response_id
        return await self.send(event)

    async def truncate(self, *, item_id: str, audio_end_ms: int, content_index: int = 0) -> str:
        return await self.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": audio_end_ms,
            }
        )

    async def delete_item(self, *, item_id: str) -> str:
        return await self.send({"type": "conversation.item.delete", "item_id": item_id})

    async def create_item(
        self, *, item: Mapping[str, Any], previous_item_id: str | None = None
    ) -> str:
        event: dict[str, Any] = {"type": "conversation.item.create", "item": dict(item)}
        if previous_item_id is not None:
            event["previous_item_id"] = previous_item_id
        return await self.send(event)

    async def add_user_text(self, *, text: str, item_id: str | None = None) -> str:
        """A user text message (how `Context update:` items are placed)."""
        item: dict[str, Any] = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        if item_id is not None:
            item["id"] = item_id
        return await self.create_item(item=item)

    async def send_function_output(self, *, call_id: str, output: str) -> str:
        """Answer a function call. It does not start a response: send `create_response()`."""
        return await self.create_item(
            item={"type": "function_call_output", "call_id": call_id, "output": output}
        )

    def _require_connection(self) -> AsyncRealtimeConnection:
        if self._connection is None:
            raise RuntimeError("the model link is not connected; call connect() first")
        return self._connection


_PLAIN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def _decode(raw_text: str) -> tuple[str, dict[str, Any]]:
    try:
        data = json.loads(raw_text)
    except json.JSONDecodeError:
        return UNPARSEABLE_EVENT_TYPE, {}
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return UNPARSEABLE_EVENT_TYPE, data if isinstance(data, dict) else {}
    return data["type"], data


def _closed_from(exc: ConnectionClosed) -> ModelLinkClosed:
    received = exc.rcvd
    if received is None:
        return ModelLinkClosed(reason="connection lost without a close frame", code=1006)
    reason = received.reason or ("closed normally" if isinstance(exc, ConnectionClosedOK) else "")
    return ModelLinkClosed(reason=reason or "closed by the server", code=received.code)
