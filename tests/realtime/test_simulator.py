"""The simulator over a real WebSocket, driven through the official SDK."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.realtime.protocol import validate_client_event, validate_server_event
from services.realtime.simulator.voice import (
    BYTES_PER_MS,
    pcm_duration_ms,
    silence,
    synthesize_speech,
)
from tests.realtime.conftest import SdkConnect, SdkSession, StartSimulator


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def _audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )


ONE_REPLY: dict[str, Any] = {
    "name": "one-reply",
    "session": {"pacing": "fast"},
    "user_utterances": ["Can you help me with fractions?"],
    "responses": [{"say": "Of course. Let's look at the fraction on your screen together."}],
}


async def test_full_turn_speech_in_audio_out(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    updated = await sdk.configure(create_response=False, silence_duration_ms=500)
    turn_detection = updated["session"]["audio"]["input"]["turn_detection"]
    assert turn_detection["create_response"] is False
    assert turn_detection["threshold"] == 0.5  # defaults filled in, as the server reports them

    speech = synthesize_speech("Can you help me with fractions?")
    await sdk.append(silence(600) + speech + silence(700))
    turn = await sdk.until("conversation.item.input_audio_transcription.completed")
    assert _types(turn)[:5] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    started, stopped, committed, added = turn[0], turn[1], turn[2], turn[3]
    assert 600 - 300 <= started["audio_start_ms"] <= 600 - 300 + 30
    speech_end_ms = 600 + pcm_duration_ms(speech)
    assert speech_end_ms + 480 <= stopped["audio_end_ms"] <= speech_end_ms + 520
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert added["item"]["role"] == "user"
    assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    assert turn[-1]["transcript"] == "Can you help me with fractions?"

    await sdk.send({"type": "response.create"})
    response = await sdk.until("response.done")
    kinds = _types(response)
    assert kinds[:5] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert kinds[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    deltas = [e for e in response if e["type"] == "response.output_audio.delta"]
    assert len(deltas) > 10
    for delta in deltas:
        size_ms = len(base64.b64decode(delta["delta"])) / BYTES_PER_MS
        assert size_ms <= 100
    assert deltas[0]["item_id"] == response[2]["item"]["id"]
    transcript = "".join(
        e["delta"] for e in response if e["type"] == "response.output_audio_transcript.delta"
    )
    expected_text = "Of course. Let's look at the fraction on your screen together."
    assert transcript == expected_text
    done = response[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": expected_text}]
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0

    # The audio the client got is byte-for-byte what the simulator generated.
    session = server.sessions[0]
    assert _audio_of(response) == session.all_generated_audio
    assert bytes(session.input_audio) == silence(600) + speech + silence(700)
    # And the wire records agree on both sides, in order.
    assert session.sent_texts == sdk.received_texts
    assert session.received_texts == sdk.sent_texts


async def test_every_client_event_the_tests_send_is_ga(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    await sdk.configure()
    await sdk.speak("Hello there.")
    await sdk.until("input_audio_buffer.committed")
    for text in sdk.sent_texts:
        validate_client_event(json.loads(text))
    for text in server.sessions[0].sent_texts:
        validate_server_event(json.loads(text))


@pytest.mark.parametrize(
    ("bad_event", "code", "param"),
    [
        ({"type": "response.audio.delta", "event_id": "evt_beta"}, "invalid_value", "type"),
        (
            {
                "type": "session.update",
                "event_id": "evt_beta",
                "session": {"modalities": ["audio"]},
            },
            "missing_required_parameter",
            "session.type",
        ),
        (
            {
                "type": "session.update",
                "event_id": "evt_beta",
                "session": {"type": "realtime", "modalities": ["audio"]},
            },
            "unknown_parameter",
            "session.modalities",
        ),
        (
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_beta",
                "item_id": "item_1",
                "content_index": 0,
                "audio_end_ms": "12",
            },
            "invalid_type",
            "audio_end_ms",
        ),
    ],
)
async def test_invalid_client_event_gets_a_real_shaped_error_and_the_session_goes_on(
    start_simulator: StartSimulator,
    sdk_connect: SdkConnect,
    bad_event: dict[str, Any],
    code: str,
    param: str,
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    await sdk.send(bad_event)
    error = (await sdk.until("error"))[-1]["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    assert error["event_id"] == "evt_beta"
    # The session is still usable.
    updated = await sdk.configure()
    assert updated["type"] == "session.updated"


async def test_unparseable_json_gets_an_error(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    await sdk.send_text("{not json")
    error = (await sdk.until("error"))[-1]["error"]
    assert error["code"] == "invalid_json"
    assert server.sessions[0].received_texts == ["{not json"]


async def test_response_create_while_active_is_the_real_race_error(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(
        {"name": "linger", "responses": [{"say": "Let me think.", "linger_ms": 300}]}
    )
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create", "event_id": "evt_first"})
    created = (await sdk.until("response.created"))[-1]
    await sdk.send({"type": "response.create", "event_id": "evt_second"})
    events = await sdk.until("error")
    error = events[-1]["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == "evt_second"
    assert created["response"]["id"] in error["message"]
    done = (await sdk.until("response.done"))[-1]
    assert done["response"]["status"] == "completed"
    # After response.done a new response.create is accepted.
    await sdk.send({"type": "response.create"})
    assert (await sdk.until("response.done"))[-1]["response"]["status"] == "completed"


async def test_server_initiated_response_provokes_the_race(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("active_response_race")
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=False)
    await sdk.speak("What's next?")
    await sdk.until("input_audio_buffer.committed")
    await sdk.send({"type": "response.create", "event_id": "evt_after_commit"})
    events = await sdk.until("error")
    assert "response.created" in _types(events)
    assert events[-1]["error"]["code"] == "conversation_already_has_active_response"


async def test_cancel_active_response_and_cancel_with_nothing_active(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(
        {"name": "long", "responses": [{"say": "This is a rather long answer. " * 4}]},
        realtime_pacing=True,
    )
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create"})
    await sdk.until("response.output_audio.delta")
    await sdk.send({"type": "response.cancel"})
    events = await sdk.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    assert "response.output_audio.done" in _types(events)
    generated_ms = len(server.sessions[0].all_generated_audio) / BYTES_PER_MS
    assert generated_ms < 2000  # stopped early, not the whole answer

    await sdk.send({"type": "response.cancel", "event_id": "evt_cancel_again"})
    error = (await sdk.until("error"))[-1]["error"]
    assert error["code"] == "response_cancel_not_active"
    assert error["event_id"] == "evt_cancel_again"


async def _one_spoken_response(sdk: SdkSession) -> tuple[str, int]:
    await sdk.send({"type": "response.create"})
    events = await sdk.until("response.done")
    item_id = events[-1]["response"]["output"][0]["id"]
    return item_id, len(_audio_of(events)) // BYTES_PER_MS


async def _truncate(sdk: SdkSession, item_id: str, audio_end_ms: int, **extra: Any) -> None:
    await sdk.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms,
            **extra,
        }
    )


async def test_truncate_rejects_zero_and_negative_and_cuts_the_context(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    item_id, generated_ms = await _one_spoken_response(sdk)

    await _truncate(sdk, item_id, 0, event_id="evt_zero")
    error = (await sdk.until("error"))[-1]["error"]
    assert error["message"] == "Only model output audio messages can be truncated"
    assert error["code"] == "unsupported_content_type"  # livekit/agents #6158
    assert error["event_id"] == "evt_zero"

    await _truncate(sdk, item_id, -40)
    error = (await sdk.until("error"))[-1]["error"]
    assert (error["code"], error["param"]) == ("integer_below_min_value", "audio_end_ms")
    assert "Expected a value >= 0, but got -40 instead." in error["message"]

    await _truncate(sdk, item_id, 700)
    truncated = (await sdk.until("conversation.item.truncated"))[-1]
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 700)
    session = server.sessions[0]
    assert session.truncations == [(item_id, 700)]
    entry = session.conversation.get(item_id)
    assert entry is not None and entry.audio_ms == 700
    assert entry.item["content"][0]["transcript"] == ""  # unheard text leaves the context
    # The generated record is untouched: replay compares against what was really sent.
    assert len(session.generated_audio[item_id]) // BYTES_PER_MS == generated_ms


async def test_truncate_past_the_end_errors_then_clamps(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    """The real API reports the overshoot with a null event_id, then truncates at the audio's
    end anyway and confirms that (twilio-samples #45, openai-agents-python #2370)."""
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    item_id, generated_ms = await _one_spoken_response(sdk)

    beyond = generated_ms + 85
    await _truncate(sdk, item_id, beyond, event_id="evt_beyond")
    events = await sdk.until("conversation.item.truncated")
    assert _types(events) == ["error", "conversation.item.truncated"]
    error = events[0]["error"]
    assert (
        error["message"] == f"Audio content of {generated_ms}ms is already shorter than {beyond}ms"
    )
    assert error["event_id"] is None
    assert events[1]["audio_end_ms"] == generated_ms
    assert server.sessions[0].truncations == [(item_id, generated_ms)]


async def test_delete_and_retrieve_items(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    await sdk.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Context update: page 2"}],
            },
        }
    )
    added = (await sdk.until("conversation.item.done"))[-1]["item"]
    assert added["content"][0]["text"] == "Context update: page 2"
    await sdk.send({"type": "conversation.item.retrieve", "item_id": added["id"]})
    assert (await sdk.until("conversation.item.retrieved"))[-1]["item"]["id"] == added["id"]
    await sdk.send({"type": "conversation.item.delete", "item_id": added["id"]})
    assert (await sdk.until("conversation.item.deleted"))[-1]["item_id"] == added["id"]
    await sdk.send({"type": "conversation.item.delete", "item_id": added["id"]})
    assert (await sdk.until("error"))[-1]["error"]["code"] == "item_delete_invalid_item_id"
    assert len(server.sessions[0].conversation) == 0


async def test_barge_in_cancels_the_active_response(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("barge_in", realtime_pacing=True)
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=False, silence_duration_ms=300)
    await sdk.send({"type": "response.create"})
    await sdk.until("response.output_audio.delta")
    await asyncio.sleep(0.3)
    await sdk.append(synthesize_speech("Wait, stop.") + silence(400))
    events = await sdk.until("response.done", timeout_s=10)
    kinds = _types(events)
    assert "input_audio_buffer.speech_started" in kinds
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    # Interrupted early: neither mid-audio call (at 50% and 60%) was ever emitted.
    assert "response.function_call_arguments.done" not in kinds
    generated = server.sessions[0].all_generated_audio
    assert 150 < len(generated) / BYTES_PER_MS < 3000


async def test_mid_audio_function_call_arrives_while_audio_is_still_generated(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("mid_audio_call")
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create"})
    events = await sdk.until("response.done")
    kinds = _types(events)
    call_added = next(
        i
        for i, e in enumerate(events)
        if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
    )
    audio_done = kinds.index("response.output_audio.done")
    assert call_added < audio_done
    audio_before_call = sum(1 for k in kinds[:call_added] if k == "response.output_audio.delta")
    audio_after_call = sum(1 for k in kinds[call_added:] if k == "response.output_audio.delta")
    assert audio_before_call > 0 and audio_after_call > 0
    call = events[call_added]
    assert call["output_index"] == 1
    arguments_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert json.loads(arguments_done["arguments"]) == {"answer": "9/12"}
    assert arguments_done["call_id"] == call["item"]["call_id"]
    assert arguments_done["name"] == "check_answer"
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert server.sessions[0].conversation.unanswered_call_ids() == [call["item"]["call_id"]]

    # Answer the call; the follow-up response is the scripted next one.
    await sdk.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": call["item"]["call_id"],
                "output": '{"correct": true}',
            },
        }
    )
    await sdk.until("conversation.item.done")
    assert server.sessions[0].conversation.unanswered_call_ids() == []
    await sdk.send({"type": "response.create"})
    follow_up = await sdk.until("response.done")
    assert follow_up[-1]["response"]["output"][0]["content"][0]["transcript"] == (
        "Your answer is correct."
    )


async def test_tool_only_response_has_no_audio(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("tool_only")
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create"})
    events = await sdk.until("response.done")
    kinds = _types(events)
    assert "response.output_audio.delta" not in kinds
    assert "response.content_part.added" not in kinds
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["function_call"]
    assert output[0]["name"] == "open_exercise"
    assert events[-1]["response"]["usage"]["output_token_details"]["audio_tokens"] == 0
    assert server.sessions[0].all_generated_audio == b""


async def test_two_calls_in_one_response(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("two_calls")
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create"})
    events = await sdk.until("response.done")
    calls = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [c["name"] for c in calls] == ["check_answer", "get_hint"]
    assert [c["output_index"] for c in calls] == [1, 2]
    assert len({c["call_id"] for c in calls}) == 2
    kinds = _types(events)
    first_call = kinds.index("response.function_call_arguments.done")
    assert first_call < kinds.index("response.output_audio.done")  # mid-audio
    second_call = len(kinds) - 1 - kinds[::-1].index("response.function_call_arguments.done")
    assert second_call > kinds.index("response.output_audio.done")  # after the audio


async def test_function_output_for_an_unknown_call_is_refused(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    await sdk.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_nope", "output": "{}"},
        }
    )
    error = (await sdk.until("error"))[-1]["error"]
    assert error["param"] == "item.call_id"


async def test_session_expires_then_closes(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(
        {"name": "expiry", "session": {"lifetime_s": 0.4}, "responses": [{"say": "Hi."}]}
    )
    sdk = await sdk_connect(server)
    error = (await sdk.until("error", timeout_s=3))[-1]["error"]
    assert error["code"] == "session_expired"
    assert "maximum duration" in error["message"]
    with pytest.raises(ConnectionClosed):
        await sdk.next_event(timeout_s=3)


async def test_socket_drop_after_n_responses_keeps_what_was_sent(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("socket_drop")
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create"})
    await sdk.until("response.done")
    with pytest.raises(ConnectionClosed) as caught:
        await sdk.next_event(timeout_s=3)
    assert caught.value.rcvd is None  # no close frame: a dropped connection
    session = server.sessions[0]
    await asyncio.wait_for(session.closed.wait(), timeout=3)
    assert session.sent_texts == sdk.received_texts

    # A new connection continues the script.
    again = await sdk_connect(server)
    await again.send({"type": "response.create"})
    done = (await again.until("response.done"))[-1]
    assert done["response"]["output"][0]["content"][0]["transcript"] == "I'm back. Where were we?"


async def test_socket_drop_in_the_middle_of_audio(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(
        {
            "name": "drop-mid",
            "responses": [{"say": "This sentence is cut off halfway.", "drop_at_fraction": 0.5}],
        }
    )
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create"})
    received: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed):
        while True:
            received.append(await sdk.next_event(timeout_s=3))
    assert "response.done" not in _types(received)
    assert _audio_of(received) == server.sessions[0].all_generated_audio
    assert server.sessions[0].all_generated_audio


async def test_automatic_response_when_the_session_asks_for_one(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=True, transcription=False)
    await sdk.speak("Hello?")
    events = await sdk.until("response.done")
    assert "conversation.item.input_audio_transcription.completed" not in _types(events)
    assert events[-1]["response"]["status"] == "completed"


async def test_manual_commit_and_clear_without_turn_detection(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(ONE_REPLY)
    sdk = await sdk_connect(server)
    await sdk.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
    )
    assert (await sdk.until("session.updated"))[-1]["session"]["audio"]["input"][
        "turn_detection"
    ] is None
    await sdk.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
    error = (await sdk.until("error"))[-1]["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"
    await sdk.append(silence(100) + synthesize_speech("Hello.") + silence(1000))
    await sdk.send({"type": "input_audio_buffer.clear"})
    events = await sdk.until("input_audio_buffer.cleared")
    assert "input_audio_buffer.speech_started" not in _types(events)  # no VAD when it is off
    await sdk.append(synthesize_speech("Hello again."))
    await sdk.send({"type": "input_audio_buffer.commit"})
    committed = await sdk.until("conversation.item.done")
    assert committed[0]["type"] == "input_audio_buffer.committed"
    entry = server.sessions[0].conversation.get(committed[0]["item_id"])
    assert entry is not None and bytes(entry.audio) == synthesize_speech("Hello again.")


async def test_realtime_pacing_takes_about_the_audio_duration(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(
        {
            "name": "paced",
            "session": {"generation_speed": 2.0},
            "responses": [{"say": "One two three four five."}],
        },
        realtime_pacing=True,
    )
    sdk = await sdk_connect(server)
    loop = asyncio.get_running_loop()
    await sdk.send({"type": "response.create"})
    await sdk.until("response.output_audio.delta")
    started = loop.time()
    events = await sdk.until("response.done")
    elapsed = loop.time() - started
    audio_s = (len(server.sessions[0].all_generated_audio) / BYTES_PER_MS) / 1000
    assert len(_audio_of(events)) > 0
    # At twice real time, the audio takes about half its duration to arrive.
    assert audio_s / 2 * 0.7 < elapsed < audio_s / 2 + 0.5


async def test_handshake_checks_path_model_and_key(start_simulator: StartSimulator) -> None:
    server = await start_simulator(ONE_REPLY, api_key="secret")
    wrong_key = AsyncOpenAI(api_key="nope", websocket_base_url=server.url)
    with pytest.raises(InvalidStatus) as caught:
        await wrong_key.realtime.connect(model="gpt-realtime").enter()
    assert caught.value.response.status_code == 401
    wrong_path = AsyncOpenAI(api_key="secret", websocket_base_url=server.url + "/beta")
    with pytest.raises(InvalidStatus) as caught:
        await wrong_path.realtime.connect(model="gpt-realtime").enter()
    assert caught.value.response.status_code == 404
    right = AsyncOpenAI(api_key="secret", websocket_base_url=server.url)
    connection = await right.realtime.connect(model="gpt-realtime-2").enter()
    created = json.loads(await connection.recv_bytes())
    assert created["session"]["model"] == "gpt-realtime-2"
    await connection.close()


async def test_barge_in_before_any_audio_leaves_nothing_to_truncate(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("barge_in_before_audio", realtime_pacing=True)
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=False, silence_duration_ms=300)
    await sdk.send({"type": "response.create"})
    added = (await sdk.until("response.content_part.added"))[-1]
    await sdk.append(synthesize_speech("Actually, never mind.") + silence(400))
    events = await sdk.until("response.done", timeout_s=5)
    assert "response.output_audio.delta" not in _types(events)
    assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
    item_id = added["item_id"]
    await sdk.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 0,
        }
    )
    assert (await sdk.until("error"))[-1]["error"]["message"] == (
        "Only model output audio messages can be truncated"
    )
    await sdk.send({"type": "conversation.item.delete", "item_id": item_id})
    assert (await sdk.until("conversation.item.deleted"))[-1]["item_id"] == item_id


async def test_malformed_arguments_are_streamed_verbatim(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("bad_tool_calls")
    sdk = await sdk_connect(server)
    arguments: list[str] = []
    for _ in range(3):
        await sdk.send({"type": "response.create"})
        events = await sdk.until("response.done")
        deltas = "".join(
            e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
        )
        done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert deltas == done["arguments"]
        arguments.append(done["arguments"])
    assert json.loads(arguments[0]) == {"lesson_id": 101, "step": "one"}
    assert arguments[1] == '{"lesson_id": "fractions-101", "step": '
    assert json.loads(arguments[2]) == {"lesson_id": "no-such-lesson", "step": 1}


async def test_the_tutoring_script_end_to_end(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    """The `make demo` conversation, fast: three spoken turns, one tool call and its follow-up."""
    server = await start_simulator("tutoring")
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=False)
    scenario = server.scenario
    transcripts: list[str] = []
    spoken: list[str] = []
    for utterance in scenario.user_utterances:
        await sdk.speak(utterance)
        turn = await sdk.until("conversation.item.input_audio_transcription.completed")
        transcripts.append(turn[-1]["transcript"])
        await sdk.send({"type": "response.create"})
        done = (await sdk.until("response.done"))[-1]["response"]
        spoken.append(done["output"][0]["content"][0]["transcript"])
        for item in done["output"][1:]:
            assert item["name"] == "mark_step_complete"
            await sdk.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "function_call_output",
                        "call_id": item["call_id"],
                        "output": '{"ok": true}',
                    },
                }
            )
            await sdk.send({"type": "response.create"})
            follow_up = (await sdk.until("response.done"))[-1]["response"]
            spoken.append(follow_up["output"][0]["content"][0]["transcript"])
    assert transcripts == list(scenario.user_utterances)
    assert spoken == [response.say for response in scenario.responses]
    session = server.sessions[0]
    assert session.conversation.unanswered_call_ids() == []
    assert session.sent_texts == sdk.received_texts
