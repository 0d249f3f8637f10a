"""GA Realtime event validation against the official `openai` SDK's types.

The SDK's event unions carry discriminator metadata that pydantic ignores, and its models accept
unknown keys. Both would let a wrong event through (a beta name, a typo in a field), so events
are validated here through tagged unions on `type`, in strict mode (JSON shapes only, no
coercion of "100" into 100), and then walked to reject every key the SDK model does not define.
The same module serves the simulator (validating what it sends and receives) and the model link
(validating what Earpiece sends).

Server events are checked against what the server really sends, which the SDK's event models do
not always say: `session.created`/`session.updated` type their `session` with the *request*
models, which lack the `id`, `object` and `expires_at` the server includes (the OpenAPI spec's
examples and the SDK's own `RealtimeSessionCreateResponse` have them), and the transcription
delta lacks the `obfuscation` the server adds to streamed deltas. Those members are replaced by
subclasses typed with the response models, so strictness never forces the simulator to send less
than the real server does, and unknown keys are still rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, Union, get_args

from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionDeltaEvent,
    RealtimeClientEvent,
    RealtimeServerEvent,
    RealtimeSessionCreateResponse,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from openai.types.realtime.realtime_transcription_session_create_response import (
    RealtimeTranscriptionSessionCreateResponse,
)
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

__all__ = [
    "CLIENT_EVENT_TYPES",
    "SERVER_EVENT_TYPES",
    "Direction",
    "ErrorCode",
    "ProtocolError",
    "SessionCreatedAsSent",
    "SessionUpdatedAsSent",
    "TranscriptionDeltaAsSent",
    "validate_client_event",
    "validate_server_event",
]

Direction = Literal["server", "client"]
ErrorCode = Literal[
    "invalid_value", "invalid_type", "missing_required_parameter", "unknown_parameter"
]


def _union_members(alias: object) -> tuple[type[BaseModel], ...]:
    """The model classes inside `Annotated[Union[...], PropertyInfo(...)]`."""
    union = get_args(alias)[0]
    return tuple(get_args(union))


def _tagged_adapter(members: tuple[type[BaseModel], ...]) -> TypeAdapter[Any]:
    tagged = Annotated[Union[members], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
    return TypeAdapter(tagged)


def _event_type_names(members: tuple[type[BaseModel], ...]) -> frozenset[str]:
    names: set[str] = set()
    for member in members:
        names.update(get_args(member.model_fields["type"].annotation))
    return frozenset(names)


# A plain union (not tagged): its error locations name the member class, which `_path_of` skips.
SessionAsSent = RealtimeSessionCreateResponse | RealtimeTranscriptionSessionCreateResponse


class SessionCreatedAsSent(SessionCreatedEvent):
    """`session.created` with the session as the server reports it (a response object)."""

    session: SessionAsSent  # type: ignore[assignment]


class SessionUpdatedAsSent(SessionUpdatedEvent):
    """`session.updated` with the session as the server reports it (a response object)."""

    session: SessionAsSent  # type: ignore[assignment]


class TranscriptionDeltaAsSent(ConversationItemInputAudioTranscriptionDeltaEvent):
    """The transcription delta with the server's `obfuscation` padding."""

    obfuscation: str | None = None


_AS_SENT: dict[type[BaseModel], type[BaseModel]] = {
    SessionCreatedEvent: SessionCreatedAsSent,
    SessionUpdatedEvent: SessionUpdatedAsSent,
    ConversationItemInputAudioTranscriptionDeltaEvent: TranscriptionDeltaAsSent,
}

_SERVER_MEMBERS = tuple(
    _AS_SENT.get(member, member) for member in _union_members(RealtimeServerEvent)
)
_CLIENT_MEMBERS = _union_members(RealtimeClientEvent)
_SERVER_ADAPTER = _tagged_adapter(_SERVER_MEMBERS)
_CLIENT_ADAPTER = _tagged_adapter(_CLIENT_MEMBERS)

SERVER_EVENT_TYPES: frozenset[str] = _event_type_names(_SERVER_MEMBERS)
"""Every GA server event type the installed SDK knows."""
CLIENT_EVENT_TYPES: frozenset[str] = _event_type_names(_CLIENT_MEMBERS)
"""Every GA client event type the installed SDK knows."""


class ProtocolError(ValueError):
    """An event that is not a valid GA Realtime event. `code` uses the API's own error codes so
    the simulator can answer a bad client event the way the real server would."""

    def __init__(
        self,
        *,
        direction: Direction,
        event_type: str | None,
        event_id: str | None,
        path: str,
        code: ErrorCode,
        message: str,
    ) -> None:
        self.direction: Direction = direction
        self.event_type = event_type
        self.event_id = event_id
        self.path = path
        self.code: ErrorCode = code
        self.message = message
        shown_type = event_type if event_type is not None else "<no type>"
        super().__init__(
            f"invalid {direction} event {shown_type!r} at {path or '<root>'!r}: {message}"
        )


def validate_server_event(data: Mapping[str, Any]) -> BaseModel:
    """Validate one server event (a decoded JSON object) and return the SDK model."""
    return _validate(_SERVER_ADAPTER, data, direction="server", known=SERVER_EVENT_TYPES)


def validate_client_event(data: Mapping[str, Any]) -> BaseModel:
    """Validate one client event (a decoded JSON object) and return the SDK model."""
    return _validate(_CLIENT_ADAPTER, data, direction="client", known=CLIENT_EVENT_TYPES)


def _validate(
    adapter: TypeAdapter[Any],
    data: Mapping[str, Any],
    *,
    direction: Direction,
    known: frozenset[str],
) -> BaseModel:
    if not isinstance(data, Mapping):
        raise ProtocolError(
            direction=direction,
            event_type=None,
            event_id=None,
            path="",
            code="invalid_type",
            message=f"An event must be a JSON object, not {type(data).__name__}.",
        )
    raw_type = data.get("type")
    event_type = raw_type if isinstance(raw_type, str) else None
    raw_event_id = data.get("event_id")
    event_id = raw_event_id if isinstance(raw_event_id, str) else None

    def fail(path: str, code: ErrorCode, message: str) -> ProtocolError:
        return ProtocolError(
            direction=direction,
            event_type=event_type,
            event_id=event_id,
            path=path,
            code=code,
            message=message,
        )

    if raw_type is None:
        raise fail("type", "missing_required_parameter", "Missing required parameter: 'type'.")
    if event_type is None or event_type not in known:
        supported = ", ".join(f"'{name}'" for name in sorted(known))
        raise fail(
            "type",
            "invalid_value",
            f"Invalid value: {raw_type!r}. Supported values are: {supported}.",
        )
    try:
        model = adapter.validate_python(dict(data), strict=True)
    except ValidationError as exc:
        path, code, message = _describe(exc, event_type=event_type)
        raise fail(path, code, message) from None
    if not isinstance(model, BaseModel):  # pragma: no cover - the unions hold models only
        raise fail("", "invalid_type", "Validated to a non-model value.")
    unknown_path = next(_unknown_keys(model, prefix=""), None)
    if unknown_path is not None:
        raise fail(unknown_path, "unknown_parameter", f"Unknown parameter: '{unknown_path}'.")
    return model


def _unknown_keys(value: object, *, prefix: str) -> Iterator[str]:
    """Paths of keys that no SDK model field defines, depth first."""
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            yield f"{prefix}{key}"
        for name, field in type(value).model_fields.items():
            shown = field.alias or name
            yield from _unknown_keys(getattr(value, name), prefix=f"{prefix}{shown}.")
    elif isinstance(value, list | tuple):
        stem = prefix.removesuffix(".")
        for index, element in enumerate(value):
            yield from _unknown_keys(element, prefix=f"{stem}[{index}].")
    elif isinstance(value, dict):
        # Free-form JSON (tool parameter schemas, metadata) holds no models; models inside a
        # typed dict would still be walked.
        for key, element in value.items():
            yield from _unknown_keys(element, prefix=f"{prefix}{key}.")


_MEMBER_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_TYPE_ERRORS_SUFFIX = "_type"
_MISSING_ERRORS = {"missing", "union_tag_not_found"}


def _describe(exc: ValidationError, *, event_type: str) -> tuple[str, ErrorCode, str]:
    """Turn pydantic's errors into one API-style (path, code, message).

    Errors inside nested unions are reported for every member; the members whose own `type`
    literal did not match are not what the sender meant, so they are discarded first.
    """
    errors = exc.errors(include_url=False)
    rejected_members = {
        _member_prefix(e["loc"])
        for e in errors
        if e["type"] == "literal_error" and _is_member_tag_mismatch(e["loc"])
    }
    plausible = [e for e in errors if _member_prefix(e["loc"]) not in rejected_members]
    # When no member's `type` matched, the `type` itself is the mistake.
    tag_errors = [e for e in errors if _is_member_tag_mismatch(e["loc"])]
    chosen_pool = plausible or tag_errors or [*errors]

    # When several union members fail on the same literal (e.g. role), list every allowed value.
    first = chosen_pool[0]
    path = _path_of(first["loc"], event_type=event_type)
    same_path_literals = [
        e
        for e in chosen_pool
        if e["type"] == "literal_error" and _path_of(e["loc"], event_type=event_type) == path
    ]
    if first["type"] == "literal_error" and len(same_path_literals) > 1:
        allowed = (str(e.get("ctx", {}).get("expected", "")) for e in same_path_literals)
        expected = ", ".join(dict.fromkeys(allowed))  # deduplicated, in order
        return (
            path,
            "invalid_value",
            f"Invalid value: {first['input']!r}. Supported values are: {expected}.",
        )
    return path, _code_for(first["type"]), _message_for(first, path=path)


def _member_prefix(loc: tuple[Any, ...] | list[Any]) -> tuple[Any, ...]:
    last_member = -1
    for index, part in enumerate(loc):
        if index > 0 and isinstance(part, str) and _MEMBER_NAME.match(part):
            last_member = index
    return tuple(loc[: last_member + 1]) if last_member >= 0 else ()


def _is_member_tag_mismatch(loc: tuple[Any, ...] | list[Any]) -> bool:
    """The error is on a union member's own `type` field: `(..., 'SomeMember', 'type')`."""
    return (
        len(loc) >= 2
        and loc[-1] == "type"
        and isinstance(loc[-2], str)
        and bool(_MEMBER_NAME.match(loc[-2]))
    )


def _path_of(loc: tuple[Any, ...] | list[Any], *, event_type: str) -> str:
    """`('conversation.item.create', 'item', 'RealtimeConversationItemUserMessage', 'content',
    0, 'text')` becomes `item.content[0].text`."""
    parts = list(loc)
    if parts and parts[0] == event_type:
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _MEMBER_NAME.match(part) or "[" in part or part in {"str", "int", "float", "bool"}:
            continue  # a union member's name, not a field
        else:
            path += f".{part}" if path else part
    return path


def _code_for(pydantic_type: str) -> ErrorCode:
    if pydantic_type in _MISSING_ERRORS:
        return "missing_required_parameter"
    if pydantic_type.endswith(_TYPE_ERRORS_SUFFIX) or pydantic_type == "model_attributes_type":
        return "invalid_type"
    return "invalid_value"


def _message_for(error: Any, *, path: str) -> str:
    code = _code_for(error["type"])
    if code == "missing_required_parameter":
        return f"Missing required parameter: '{path}'."
    if code == "invalid_type":
        return (
            f"Invalid type for '{path}': {error['msg'].lower()}, got {_json_kind(error['input'])}."
        )
    return f"Invalid value for '{path}': {error['msg']}."


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
