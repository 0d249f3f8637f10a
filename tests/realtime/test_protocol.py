"""protocol.py: tagged unions on `type`, strict shapes, and no unknown keys anywhere."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.realtime import (
    ConversationItemCreateEvent,
    ResponseAudioDeltaEvent,
    SessionUpdateEvent,
)

from services.realtime.protocol import (
    CLIENT_EVENT_TYPES,
    SERVER_EVENT_TYPES,
    ProtocolError,
    validate_client_event,
    validate_server_event,
)

AUDIO_DELTA: dict[str, Any] = {
    "type": "response.output_audio.delta",
    "event_id": "event_1",
    "response_id": "resp_1",
    "item_id": "item_1",
    "output_index": 0,
    "content_index": 0,
    "delta": "AAAA",
}


def test_the_sdk_event_sets_are_the_ga_ones() -> None:
    assert len(CLIENT_EVENT_TYPES) == 11
    assert "response.output_audio.delta" in SERVER_EVENT_TYPES
    assert "response.audio.delta" not in SERVER_EVENT_TYPES


def test_valid_events_come_back_as_sdk_models() -> None:
    assert isinstance(validate_server_event(AUDIO_DELTA), ResponseAudioDeltaEvent)
    update = validate_client_event(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": None,
                    }
                },
                "tools": [
                    {
                        "type": "function",
                        "name": "mark_step_complete",
                        "parameters": {"type": "object", "additionalProperties": False},
                    }
                ],
            },
        }
    )
    assert isinstance(update, SessionUpdateEvent)


@pytest.mark.parametrize(
    "beta_type",
    ["response.audio.delta", "response.audio_transcript.delta", "response.text.delta"],
)
def test_beta_server_event_names_fail(beta_type: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_server_event({**AUDIO_DELTA, "type": beta_type})
    assert caught.value.event_type == beta_type
    assert caught.value.path == "type"
    assert caught.value.code == "invalid_value"
    assert beta_type in str(caught.value)


def test_a_server_event_sent_as_a_client_event_fails() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(AUDIO_DELTA)
    assert caught.value.direction == "client"
    assert caught.value.event_id == "event_1"


def test_unknown_top_level_key_is_rejected() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_server_event({**AUDIO_DELTA, "audio_ms": 20})
    assert caught.value.path == "audio_ms"
    assert caught.value.code == "unknown_parameter"


def test_unknown_nested_key_names_the_full_path() -> None:
    event = {
        "type": "conversation.item.create",
        "event_id": "evt_7",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}, {"type": "input_text", "txt": "x"}],
        },
    }
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(event)
    assert caught.value.path == "item.content[1].txt"
    assert caught.value.event_type == "conversation.item.create"
    assert "item.content[1].txt" in str(caught.value)


def test_beta_session_shape_is_rejected() -> None:
    """`modalities` and flat `turn_detection` are beta; GA nests them under audio.input."""
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(
            {
                "type": "session.update",
                "session": {"type": "realtime", "modalities": ["audio", "text"]},
            }
        )
    assert caught.value.path == "session.modalities"
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(
            {"type": "session.update", "session": {"type": "realtime", "turn_detection": None}}
        )
    assert caught.value.path == "session.turn_detection"


def test_missing_required_field() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(
            {"type": "conversation.item.create", "item": {"type": "function_call_output"}}
        )
    assert caught.value.code == "missing_required_parameter"
    assert caught.value.path in {"item.call_id", "item.output"}


def test_strict_types_do_not_coerce() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(
            {
                "type": "conversation.item.truncate",
                "item_id": "item_1",
                "content_index": 0,
                "audio_end_ms": "1500",
            }
        )
    assert caught.value.code == "invalid_type"
    assert caught.value.path == "audio_end_ms"


def test_wrong_literal_lists_the_allowed_values() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "narrator", "content": []},
            }
        )
    assert caught.value.path == "item.role"
    assert "'user'" in caught.value.message


def test_missing_type_and_non_object() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_client_event({"event_id": "x"})
    assert caught.value.code == "missing_required_parameter"
    with pytest.raises(ProtocolError):
        validate_client_event(["not", "an", "object"])  # type: ignore[arg-type]


def test_function_call_output_item_validates() -> None:
    model = validate_client_event(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": "{}"},
        }
    )
    assert isinstance(model, ConversationItemCreateEvent)


def test_nested_union_with_no_matching_type_names_the_type() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_client_event(
            {
                "type": "conversation.item.create",
                "item": {"type": "messag", "role": "user", "content": []},
            }
        )
    assert caught.value.path == "item.type"
    assert caught.value.message.count("'message'") == 1
