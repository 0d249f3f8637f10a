"""Validation of what clients send. Each failure names the field and says what to do, so a
person reading the gRPC status can fix the request without reading our code."""

from __future__ import annotations

import json
import re
from typing import Any

from services.api.earpiece.v1 import session_pb2 as pb

TENANT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SESSION_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
CLIENT_EVENT_ID_MAX = 128

# GA Realtime voices.
VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)
MAX_AUDIO_FRAME_BYTES = 32 * 1024
MAX_SCREEN_STATE_BYTES = 16 * 1024
MAX_USER_TEXT_CHARS = 4096
MIN_IDLE_TIMEOUT_S, MAX_IDLE_TIMEOUT_S = 10.0, 24 * 3600.0
DEFAULT_IDLE_TIMEOUT_S = 600.0
MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 500, 50


class InvalidField(ValueError):
    """A request field is missing or wrong; `field` is its path in the request."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def require_session_id(value: str, *, field: str = "session_id") -> str:
    if not value:
        raise InvalidField(field, "is required")
    if not SESSION_ID.match(value):
        raise InvalidField(field, "must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return value


def validate_start(request: pb.StartSessionRequest, *, known_tools: frozenset[str]) -> None:
    if not request.tenant_id:
        raise InvalidField("tenant_id", "is required")
    if not TENANT_ID.match(request.tenant_id):
        raise InvalidField(
            "tenant_id", "must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    if request.session_id:
        require_session_id(request.session_id)
    if not request.HasField("config"):
        raise InvalidField("config", "is required (it carries persona_yaml or instructions)")
    config = request.config
    which = config.WhichOneof("prompt")
    if which is None:
        raise InvalidField("config.prompt", "set config.persona_yaml or config.instructions")
    if which == "instructions" and not config.instructions.strip():
        raise InvalidField("config.instructions", "is empty")
    if which == "persona_yaml" and not config.persona_yaml.strip():
        raise InvalidField("config.persona_yaml", "is empty")
    if config.voice and config.voice not in VOICES:
        raise InvalidField("config.voice", f"unknown voice; use one of {', '.join(sorted(VOICES))}")
    seen: set[str] = set()
    for i, tool in enumerate(config.tools):
        if tool not in known_tools:
            known = ", ".join(sorted(known_tools)) or "none"
            raise InvalidField(f"config.tools[{i}]", f"unknown tool {tool!r}; registered: {known}")
        if tool in seen:
            raise InvalidField(f"config.tools[{i}]", f"tool {tool!r} is listed twice")
        seen.add(tool)
    if config.HasField("idle_timeout"):
        seconds = config.idle_timeout.ToTimedelta().total_seconds()
        if not MIN_IDLE_TIMEOUT_S <= seconds <= MAX_IDLE_TIMEOUT_S:
            raise InvalidField(
                "config.idle_timeout",
                f"must be between {MIN_IDLE_TIMEOUT_S:.0f} s and {MAX_IDLE_TIMEOUT_S:.0f} s",
            )


def idle_timeout_seconds(config: pb.SessionConfig) -> float:
    if config.HasField("idle_timeout"):
        return config.idle_timeout.ToTimedelta().total_seconds()
    return DEFAULT_IDLE_TIMEOUT_S


def validate_page_size(value: int) -> int:
    if value > MAX_PAGE_SIZE:
        raise InvalidField("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE


def validate_client_event_id(message: pb.ClientMessage) -> str:
    if not message.client_event_id:
        raise InvalidField("client_event_id", "is required on every message")
    if len(message.client_event_id) > CLIENT_EVENT_ID_MAX:
        raise InvalidField("client_event_id", f"must be at most {CLIENT_EVENT_ID_MAX} characters")
    return message.client_event_id


def validate_audio(frame: pb.AudioFrame) -> bytes:
    size = len(frame.pcm16)
    if size == 0:
        raise InvalidField("audio.pcm16", "is empty")
    if size % 2:
        raise InvalidField(
            "audio.pcm16",
            f"has {size} bytes, not a whole number of PCM16 samples (2 bytes each)",
        )
    if size > MAX_AUDIO_FRAME_BYTES:
        raise InvalidField(
            "audio.pcm16",
            f"has {size} bytes; at most {MAX_AUDIO_FRAME_BYTES} per frame "
            "(send 20-100 ms of 24 kHz PCM16 per message)",
        )
    return frame.pcm16


def validate_screen_state(state: pb.ScreenState) -> dict[str, Any]:
    size = len(state.json.encode())
    if size > MAX_SCREEN_STATE_BYTES:
        raise InvalidField(
            "screen_state.json",
            f"is {size} bytes; at most {MAX_SCREEN_STATE_BYTES} "
            "(send what the user sees, not the whole page)",
        )
    try:
        value = json.loads(state.json)
    except json.JSONDecodeError as exc:
        raise InvalidField("screen_state.json", f"is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidField("screen_state.json", "must be a JSON object")
    return value


def validate_text(text: pb.UserText) -> str:
    if not text.text.strip():
        raise InvalidField("text.text", "is empty")
    if len(text.text) > MAX_USER_TEXT_CHARS:
        raise InvalidField("text.text", f"is longer than {MAX_USER_TEXT_CHARS} characters")
    return text.text


def validate_playback(report: pb.PlaybackReport) -> pb.PlaybackReport:
    if not report.response_id:
        raise InvalidField("playback.response_id", "is required")
    return report
