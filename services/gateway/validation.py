"""Validation of what clients send. Each failure names the field and says what to do, so a
person reading the gRPC status can fix the request without reading our code."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

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
MAX_PROMPT_CHARS = 64 * 1024
"""Instructions or persona YAML: a briefing is a few pages; megabytes only stall the lint."""
MAX_MODEL_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_JSON_DEPTH = 32
MAX_YAML_DEPTH = 16
MAX_RESPONSE_ID_CHARS = 128
MAX_END_REASON_CHARS = 200
MAX_SEQ = 2**63 - 1
# protobuf Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_S, _MAX_TIMESTAMP_S = -62_135_596_800, 253_402_300_799
_MAX_NANOS = 999_999_999


class InvalidField(ValueError):
    """A request field is missing or wrong; `field` is its path in the request."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_string(field: str, value: str, *, max_chars: int | None = None) -> str:
    """Text that may reach Postgres or the model: no NUL (Postgres refuses it), no lone
    surrogate (not encodable as UTF-8), and at most `max_chars` characters."""
    if max_chars is not None and len(value) > max_chars:
        raise InvalidField(field, f"is {len(value)} characters; at most {max_chars}")
    if "\x00" in value:
        raise InvalidField(field, "contains a NUL character (U+0000), which cannot be stored")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidField(
                field, f"contains a lone surrogate at character {exc.start}; send valid UTF-8"
            ) from exc
    return value


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
    if which == "instructions":
        check_string("config.instructions", config.instructions, max_chars=MAX_PROMPT_CHARS)
    if which == "persona_yaml":
        check_persona_yaml(config.persona_yaml)
    if config.model and not MAX_MODEL_NAME.match(config.model):
        raise InvalidField(
            "config.model", "must be 1-64 characters of letters, digits, '.', '_', ':' or '-'"
        )
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
        seconds = duration_seconds("config.idle_timeout", config.idle_timeout)
        if not MIN_IDLE_TIMEOUT_S <= seconds <= MAX_IDLE_TIMEOUT_S:
            raise InvalidField(
                "config.idle_timeout",
                f"must be between {MIN_IDLE_TIMEOUT_S:.0f} s and {MAX_IDLE_TIMEOUT_S:.0f} s",
            )


def duration_seconds(field: str, value: Duration) -> float:
    """A Duration's seconds, checked the way protobuf defines it (nanos within ±999,999,999 and
    of the same sign as seconds) rather than letting a conversion overflow later."""
    if not -_MAX_NANOS <= value.nanos <= _MAX_NANOS:
        raise InvalidField(field, "nanos must be between -999999999 and 999999999")
    if (value.seconds > 0 and value.nanos < 0) or (value.seconds < 0 and value.nanos > 0):
        raise InvalidField(field, "seconds and nanos must have the same sign")
    if abs(value.seconds) > 315_576_000_000:
        raise InvalidField(field, "is outside the Duration range (±10,000 years)")
    return value.seconds + value.nanos / 1e9


def idle_timeout_seconds(config: pb.SessionConfig) -> float:
    if config.HasField("idle_timeout"):
        return duration_seconds("config.idle_timeout", config.idle_timeout)
    return DEFAULT_IDLE_TIMEOUT_S


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_datetime(field: str, value: Timestamp) -> datetime:
    """A Timestamp as an aware datetime, refusing values outside protobuf's range."""
    if not _MIN_TIMESTAMP_S <= value.seconds <= _MAX_TIMESTAMP_S:
        raise InvalidField(field, "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    if not 0 <= value.nanos <= _MAX_NANOS:
        raise InvalidField(field, "nanos must be between 0 and 999999999")
    # What Timestamp.ToDatetime(UTC) gives (nanos truncated to microseconds), without its
    # pure-Python conversion: 4% of the gateway's CPU at 50 frames a second per session.
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def sent_at(message: pb.ClientMessage) -> datetime | None:
    """The client's producer time, if it sent one."""
    return timestamp_datetime("sent_at", message.sent_at) if message.HasField("sent_at") else None


def validate_end_reason(reason: str) -> str:
    return check_string("reason", reason, max_chars=MAX_END_REASON_CHARS)


def validate_after_seq(value: int) -> int:
    if value > MAX_SEQ:
        raise InvalidField("after_seq", f"must be at most {MAX_SEQ}")
    return value


# ---- YAML (persona specs), guarded before any parser builds a tree from it ----

_YAML_OPEN = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_YAML_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_YAML_STR_TAG = "tag:yaml.org,2002:str"


def check_persona_yaml(text: str, *, field: str = "config.persona_yaml") -> None:
    """Refuses YAML whose shape would break the persona loader rather than fail validation:
    nesting deeper than MAX_YAML_DEPTH (the parser recurses), aliases (a few lines can expand
    to gigabytes), and mapping keys that are not strings. Depth is measured on the token
    stream, which is produced without recursion."""
    check_string(field, text, max_chars=MAX_PROMPT_CHARS)
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, _YAML_OPEN):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = token.start_mark.line + 1
                    raise InvalidField(
                        field, f"nests deeper than {MAX_YAML_DEPTH} levels (line {line})"
                    )
            elif isinstance(token, _YAML_CLOSE):
                depth -= 1
            elif isinstance(token, yaml.AliasToken | yaml.AnchorToken):
                line = token.start_mark.line + 1
                raise InvalidField(
                    field, f"uses a YAML anchor or alias (line {line}); write the value out"
                )
        nodes = [yaml.compose(text, Loader=yaml.SafeLoader)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidField(field, f"is not valid YAML{where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise InvalidField(field, f"is not valid YAML: {exc}") from exc
    while nodes:
        node = nodes.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag != _YAML_STR_TAG:
                    line = key.start_mark.line + 1
                    raise InvalidField(
                        field, f"has a mapping key that is not a string (line {line}); quote it"
                    )
                nodes.append(value)
        elif isinstance(node, yaml.SequenceNode):
            nodes.extend(node.value)


# ---- JSON (screen state) ----

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; send finite numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a double")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError(f"the integer {text[:24]}... has more than 20 digits")
    return int(text)


def parse_json_object(field: str, text: str, *, max_bytes: int) -> dict[str, Any]:
    """Strict JSON: an object, at most `max_bytes` of UTF-8 and MAX_JSON_DEPTH levels, finite
    numbers only (no NaN, Infinity or 1e999), and strings without NUL or lone surrogates."""
    check_string(field, text)
    size = len(text.encode())
    if size > max_bytes:
        raise InvalidField(
            field,
            f"is {size} bytes; at most {max_bytes} (send what the user sees, not the whole page)",
        )
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise InvalidField(field, f"nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except json.JSONDecodeError as exc:
        raise InvalidField(field, f"is not valid JSON ({exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidField(field, f"is not acceptable JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidField(field, "must be a JSON object")
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                check_string(f"{field} (a key)", key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            check_string(f"{field} (a string value)", item)
    return value


def validate_page_size(value: int) -> int:
    if value > MAX_PAGE_SIZE:
        raise InvalidField("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE


def validate_client_event_id(message: pb.ClientMessage) -> str:
    if not message.client_event_id:
        raise InvalidField("client_event_id", "is required on every message")
    if len(message.client_event_id) > CLIENT_EVENT_ID_MAX:
        raise InvalidField("client_event_id", f"must be at most {CLIENT_EVENT_ID_MAX} characters")
    return check_string("client_event_id", message.client_event_id)


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
    return parse_json_object("screen_state.json", state.json, max_bytes=MAX_SCREEN_STATE_BYTES)


# The context channel is Earpiece's own: user text may not look like one of its injections.
RESERVED_PREFIX = re.compile(r"context\s*update\b")
# What may sit in front of the words on a line without changing what a reader sees there:
# spaces, punctuation and markup (quotes, '>', '#', '*', '-', brackets).
_LEADING_NOISE = re.compile(r"^[\W_]+")


def _looks_like_context_update(line: str) -> bool:
    visible = "".join(
        ch for ch in unicodedata.normalize("NFKC", line) if unicodedata.category(ch) != "Cf"
    )
    words = " ".join(_LEADING_NOISE.sub("", visible).casefold().split())
    return RESERVED_PREFIX.match(words) is not None


def validate_text(text: pb.UserText) -> str:
    """User text for the model. Any line that reads as `Context update:` (in any case, behind
    quotes, markup, spaces or invisible characters) is refused: that form is reserved for the
    screen state Earpiece injects, so typed text can never pass for it."""
    if not text.text.strip():
        raise InvalidField("text.text", "is empty")
    if len(text.text) > MAX_USER_TEXT_CHARS:
        raise InvalidField("text.text", f"is longer than {MAX_USER_TEXT_CHARS} characters")
    check_string("text.text", text.text)
    for number, line in enumerate(text.text.splitlines(), start=1):
        if _looks_like_context_update(line):
            raise InvalidField(
                "text.text",
                f"line {number} begins with 'Context update', which is reserved for the screen "
                "state Earpiece sends the model; send screen state as screen_state instead",
            )
    return text.text


def validate_playback(report: pb.PlaybackReport) -> pb.PlaybackReport:
    if not report.response_id:
        raise InvalidField("playback.response_id", "is required")
    check_string("playback.response_id", report.response_id, max_chars=MAX_RESPONSE_ID_CHARS)
    return report
