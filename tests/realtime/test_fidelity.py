"""What the real Realtime API does that a naive simulator would not (issue 13), each provoked
over a real WebSocket through the official SDK: timing, options, errors, fields and behaviour."""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from typing import Any

import pytest

from services.realtime.protocol import ProtocolError, validate_server_event
from services.realtime.simulator.g711 import G711Law, g711_to_pcm24k, pcm24k_to_g711
from services.realtime.simulator.scenario import (
    DEFAULT_GENERATION_SPEED,
    Scenario,
    draw_generation_speed,
)
from services.realtime.simulator.vad import semantic_silence_ms
from services.realtime.simulator.voice import BYTES_PER_MS, silence, synthesize_speech
from tests.realtime.conftest import SdkConnect, SdkSession, StartSimulator


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def _scenario(*responses: dict[str, Any], **session: Any) -> dict[str, Any]:
    return {
        "name": "fidelity",
        "session": {"pacing": "fast", **session},
        "user_utterances": ["Is this right?", "And this one?", "What about the third?"],
        "responses": list(responses) or [{"say": "Yes, that is right."}],
    }


async def _session_update(sdk: SdkSession, **session: Any) -> dict[str, Any]:
    await sdk.send({"type": "session.update", "session": {"type": "realtime", **session}})
    return (await sdk.until("session.updated"))[-1]


# ----------------------------------------------------------------- 1. timing


def test_default_generation_speed_is_a_seeded_spread_faster_than_real_time() -> None:
    draws = [
        draw_generation_speed(DEFAULT_GENERATION_SPEED, seed=seed, response_index=index)
        for seed in range(20)
        for index in range(50)
    ]
    assert min(draws) >= 2.0 and max(draws) <= 8.0
    assert 3.6 < statistics.median(draws) < 4.4
    deciles = statistics.quantiles(draws, n=10)
    assert deciles[0] < 3.0 and deciles[-1] > 5.3  # a real spread, not a constant
    again = draw_generation_speed(DEFAULT_GENERATION_SPEED, seed=3, response_index=7)
    assert again == draws[3 * 50 + 7]  # reproducible from the seed
    assert Scenario.from_dict({"name": "x", "responses": [{"say": "a"}]}).session.generation_speed
    assert draw_generation_speed(1.0, seed=0, response_index=0) == 1.0
    assert draw_generation_speed(0.6, seed=5, response_index=9) == 0.6


async def _paced_elapsed(
    start_simulator: StartSimulator, sdk_connect: SdkConnect, session: dict[str, Any]
) -> tuple[float, float, float]:
    """(audio seconds, wall seconds from first delta to response.done, recorded speed)."""
    server = await start_simulator(
        {"name": "paced", "session": session, "responses": [{"say": "One two three four."}]},
        realtime_pacing=True,
    )
    sdk = await sdk_connect(server)
    loop = asyncio.get_running_loop()
    await sdk.send({"type": "response.create"})
    first = (await sdk.until("response.output_audio.delta"))[-1]
    started = loop.time()
    await sdk.until("response.done")
    elapsed = loop.time() - started
    sim = server.sessions[0]
    audio_s = len(sim.all_generated_audio) / BYTES_PER_MS / 1000
    return audio_s, elapsed, sim.response_speeds[first["response_id"]]


async def test_realtime_pacing_defaults_to_faster_than_real_time(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    audio_s, elapsed, speed = await _paced_elapsed(start_simulator, sdk_connect, {"seed": 1})
    assert 2.0 <= speed <= 8.0
    assert elapsed < audio_s / 1.8


async def test_slower_than_real_time_stays_available(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    audio_s, elapsed, speed = await _paced_elapsed(
        start_simulator, sdk_connect, {"generation_speed": 0.6}
    )
    assert speed == 0.6
    assert elapsed > audio_s / 0.6 * 0.8


async def _transcript_positions(
    start_simulator: StartSimulator, sdk_connect: SdkConnect, **session: Any
) -> list[str]:
    """For each of three spoken turns: did the transcript come before or after the response?"""
    server = await start_simulator(_scenario(**session))
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=True)
    positions = []
    for line in ("Is this right?", "And this one?", "What about the third?"):
        await sdk.speak(line)
        events = await sdk.until("response.done")
        if "conversation.item.input_audio_transcription.completed" not in _types(events):
            events += await sdk.until("conversation.item.input_audio_transcription.completed")
        kinds = _types(events)
        completed = kinds.index("conversation.item.input_audio_transcription.completed")
        positions.append("before" if completed < kinds.index("response.created") else "after")
    return positions


async def test_transcription_order_varies_reproducibly_from_the_seed(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    seen = {
        seed: await _transcript_positions(start_simulator, sdk_connect, seed=seed)
        for seed in range(4)
    }
    assert {position for positions in seen.values() for position in positions} == {
        "before",
        "after",
    }
    assert await _transcript_positions(start_simulator, sdk_connect, seed=2) == seen[2]


@pytest.mark.parametrize(
    ("order", "expected"), [("before_response", "before"), ("after_response", "after")]
)
async def test_transcription_order_can_be_pinned(
    start_simulator: StartSimulator, sdk_connect: SdkConnect, order: str, expected: str
) -> None:
    positions = await _transcript_positions(start_simulator, sdk_connect, transcription_order=order)
    assert positions == [expected] * 3


# ----------------------------------------------------------------- 2. options


async def test_text_output_modality_streams_text_and_no_audio(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(_scenario())
    sdk = await sdk_connect(server)
    await _session_update(sdk, output_modalities=["text"])
    await sdk.send({"type": "response.create"})
    events = await sdk.until("response.done")
    kinds = _types(events)
    assert not [k for k in kinds if k.startswith("response.output_audio")]
    assert "response.output_text.done" in kinds
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Yes, that is right."
    part = next(e for e in events if e["type"] == "response.content_part.added")["part"]
    assert part == {"type": "text", "text": ""}
    done = events[-1]["response"]
    assert done["output_modalities"] == ["text"]
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert done["usage"]["output_token_details"]["audio_tokens"] == 0
    assert server.sessions[0].all_generated_audio == b""


async def test_out_of_band_response_adds_nothing_to_the_conversation(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(_scenario())
    sdk = await sdk_connect(server)
    await sdk.send(
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "output_modalities": ["text"],
                "metadata": {"purpose": "classify"},
            },
        }
    )
    events = await sdk.until("response.done")
    assert not [k for k in _types(events) if k.startswith("conversation.item")]
    created, done = events[0]["response"], events[-1]["response"]
    assert created["conversation_id"] is None and done["conversation_id"] is None
    assert done["metadata"] == {"purpose": "classify"}
    assert done["output"][0]["type"] == "message"
    assert len(server.sessions[0].conversation) == 0


async def test_max_output_tokens_ends_the_response_incomplete(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    long_line = "A fraction has two parts, a numerator on top and a denominator below it."
    server = await start_simulator(
        _scenario({"say": long_line, "function_calls": [{"name": "never_reached"}]})
    )
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create", "response": {"max_output_tokens": 20}})
    events = await sdk.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["max_output_tokens"] == 20
    assert done["usage"]["output_tokens"] <= 20 + 4  # cut at the delta that crosses the limit
    assert [item["type"] for item in done["output"]] == ["message"]  # the call never came
    assert done["output"][0]["status"] == "incomplete"
    assert server.sessions[0].conversation.unanswered_call_ids() == []


@pytest.mark.parametrize(
    ("ending", "status", "details"),
    [
        (
            {"status": "incomplete", "reason": "content_filter", "at_fraction": 0.3},
            "incomplete",
            {"type": "incomplete", "reason": "content_filter"},
        ),
        (
            {"status": "failed", "at_fraction": 0.5},
            "failed",
            {
                "type": "failed",
                "error": {
                    "type": "server_error",
                    "code": "server_error",
                    "message": "The server had an error while processing your request. "
                    "Sorry about that!",
                },
            },
        ),
        (
            {"status": "failed", "at_fraction": 0, "error": {"code": "rate_limit_exceeded"}},
            "failed",
            None,
        ),
    ],
)
async def test_scenarios_can_end_a_response_failed_or_incomplete(
    start_simulator: StartSimulator,
    sdk_connect: SdkConnect,
    ending: dict[str, Any],
    status: str,
    details: dict[str, Any] | None,
) -> None:
    line = "Let me think about that one for a moment, it is a tricky question."
    server = await start_simulator(_scenario({"say": line, "ending": ending}))
    sdk = await sdk_connect(server)
    await sdk.send({"type": "response.create"})
    events = await sdk.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == status
    if details is not None:
        assert done["status_details"] == details
    else:
        assert done["status_details"]["error"]["code"] == "rate_limit_exceeded"
        assert done["output"] == []
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert len(transcript) < len(line)
    generated_ms = len(server.sessions[0].all_generated_audio) / BYTES_PER_MS
    full_ms = len(synthesize_speech(line, pitch_hz=190.0)) / BYTES_PER_MS
    assert generated_ms <= full_ms * (ending["at_fraction"] + 0.1)


def test_ending_schema_rejects_a_reason_for_failed() -> None:
    with pytest.raises(ValueError, match="ending"):
        Scenario.from_dict(
            _scenario({"say": "x", "ending": {"status": "failed", "reason": "content_filter"}})
        )


# ----------------------------------------------------------------- 3. errors


async def test_voice_cannot_change_once_assistant_audio_exists(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(_scenario())
    sdk = await sdk_connect(server)
    before = await _session_update(sdk, audio={"output": {"voice": "cedar"}})
    assert before["session"]["audio"]["output"]["voice"] == "cedar"
    await sdk.send({"type": "response.create"})
    await sdk.until("response.done")
    same = await _session_update(sdk, audio={"output": {"voice": "cedar"}}, instructions="Hi.")
    assert same["session"]["instructions"] == "Hi."
    await sdk.send(
        {
            "type": "session.update",
            "event_id": "evt_voice",
            "session": {"type": "realtime", "audio": {"output": {"voice": "marin"}}},
        }
    )
    error = (await sdk.until("error"))[-1]["error"]
    assert error == {
        "type": "invalid_request_error",
        "code": "cannot_update_voice",
        "message": "Cannot update a conversation's voice if assistant audio is present.",
        "param": None,
        "event_id": None,  # openai-agents-python #1661
    }
    assert server.sessions[0].session_config["audio"]["output"]["voice"] == "cedar"


# ----------------------------------------------------------------- 4. fields


async def test_session_events_carry_the_server_fields(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(_scenario(lifetime_s=600))
    sdk = await sdk_connect(server)
    created = json.loads(sdk.received_texts[0])["session"]
    assert created["id"].startswith("sess_")
    assert created["object"] == "realtime.session"
    assert created["include"] is None
    assert 590 < created["expires_at"] - time.time() <= 600
    updated = (await _session_update(sdk, include=["item.input_audio_transcription.logprobs"]))[
        "session"
    ]
    assert (updated["id"], updated["expires_at"]) == (created["id"], created["expires_at"])
    assert updated["include"] == ["item.input_audio_transcription.logprobs"]


def test_server_session_is_validated_as_the_response_model() -> None:
    session = {"id": "sess_1", "object": "realtime.session", "type": "realtime"}
    validate_server_event({"type": "session.created", "event_id": "e", "session": session})
    with pytest.raises(ProtocolError) as caught:
        validate_server_event(
            {"type": "session.updated", "event_id": "e", "session": {"type": "realtime"}}
        )
    assert caught.value.path == "session.id"
    with pytest.raises(ProtocolError) as caught:
        validate_server_event(
            {"type": "session.created", "event_id": "e", "session": {**session, "voice": "x"}}
        )
    assert (caught.value.path, caught.value.code) == ("session.voice", "unknown_parameter")


async def test_transcription_deltas_carry_obfuscation(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(_scenario(transcription_order="before_response"))
    sdk = await sdk_connect(server)
    await sdk.configure()
    await sdk.speak("Is this right?")
    events = await sdk.until("conversation.item.input_audio_transcription.completed")
    deltas = [e for e in events if e["type"].endswith("transcription.delta")]
    assert deltas and all(isinstance(d["obfuscation"], str) for d in deltas)
    assert all(len(d["delta"]) + len(d["obfuscation"]) >= 16 for d in deltas)


# ----------------------------------------------------------------- 5. behaviour


async def test_idle_timeout_commits_and_responds(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(_scenario({"say": "Are you still there?"}))
    sdk = await sdk_connect(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sdk.configure(create_response=True, idle_timeout_ms=300)
    await sdk.append(silence(200))
    events = await sdk.until("response.created", timeout_s=3)
    assert loop.time() - started >= 0.3
    triggered = events[_types(events).index("input_audio_buffer.timeout_triggered")]
    assert triggered["audio_end_ms"] == 200 and triggered["audio_start_ms"] == 0
    assert _types(events)[-4:] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    assert events[-4]["item_id"] == triggered["item_id"]
    # An idle commit is not the user speaking: the script's next line is still unheard.
    assert server.script.utterances_used == 0


async def test_idle_timeout_waits_for_playback_and_is_reset_by_speech(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(_scenario({"say": "Yes."}, {"say": "Still there?"}))
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=True, idle_timeout_ms=400)
    await sdk.speak("Is this right?")
    first = await sdk.until("response.done")
    audio_s = (
        sum(
            len(base64.b64decode(e["delta"]))
            for e in first
            if e["type"] == "response.output_audio.delta"
        )
        / BYTES_PER_MS
        / 1000
    )
    loop = asyncio.get_running_loop()
    done_at = loop.time()
    await sdk.until("input_audio_buffer.timeout_triggered", timeout_s=5)
    assert loop.time() - done_at >= 0.4 + audio_s * 0.8
    assert server.sessions[0].sent_events("input_audio_buffer.timeout_triggered")


def test_semantic_vad_waits_longer_after_trailing_speech() -> None:
    assert semantic_silence_ms("auto", "Is this right?") < semantic_silence_ms("auto", "So I think")
    assert semantic_silence_ms("auto", "I want, um") > semantic_silence_ms("auto", "I want it.")
    assert semantic_silence_ms("auto", "Give me the.") == semantic_silence_ms("auto", "Give me the")
    assert (
        semantic_silence_ms("high", "So I think")
        < semantic_silence_ms("medium", "So I think")
        < semantic_silence_ms("low", "So I think")
    )


async def _speech_stopped_ms(
    start_simulator: StartSimulator,
    sdk_connect: SdkConnect,
    *,
    line: str,
    turn_detection: dict[str, Any],
    tail_ms: int,
) -> tuple[int | None, int]:
    """When the VAD ended the turn, in input ms (None: it had not), and when the speech ended."""
    server = await start_simulator(
        {
            "name": "vad",
            "session": {"pacing": "fast"},
            "user_utterances": [line],
            "responses": [{"say": "Mm."}],
        }
    )
    sdk = await sdk_connect(server)
    await _session_update(
        sdk,
        audio={"input": {"turn_detection": {**turn_detection, "create_response": False}}},
    )
    speech = synthesize_speech(line)
    await sdk.append(silence(300) + speech + silence(tail_ms))
    await sdk.send({"type": "input_audio_buffer.clear"})
    events = await sdk.until("input_audio_buffer.cleared")
    stopped = [e for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    speech_end = 300 + len(speech) // BYTES_PER_MS
    return (stopped[0]["audio_end_ms"] if stopped else None), speech_end


async def test_semantic_vad_ends_a_finished_sentence_sooner_than_a_trailing_one(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    semantic = {"type": "semantic_vad", "eagerness": "auto"}
    finished, end = await _speech_stopped_ms(
        start_simulator, sdk_connect, line="Is this right?", turn_detection=semantic, tail_ms=1500
    )
    assert finished is not None and 650 <= finished - end <= 760
    trailing, _ = await _speech_stopped_ms(
        start_simulator, sdk_connect, line="So I think that", turn_detection=semantic, tail_ms=1500
    )
    assert trailing is None  # still waiting: the user may go on
    trailing, end = await _speech_stopped_ms(
        start_simulator, sdk_connect, line="So I think that", turn_detection=semantic, tail_ms=4500
    )
    assert trailing is not None and 3950 <= trailing - end <= 4060
    # Energy VAD does not care what was said: 500 ms of silence ends either line.
    energy, end = await _speech_stopped_ms(
        start_simulator,
        sdk_connect,
        line="So I think that",
        turn_detection={"type": "server_vad", "silence_duration_ms": 500},
        tail_ms=1500,
    )
    assert energy is not None and 450 <= energy - end <= 560


async def _transcribe_one(
    start_simulator: StartSimulator,
    sdk_connect: SdkConnect,
    *,
    model: str,
    utterance: str | dict[str, Any],
    until: str = "conversation.item.input_audio_transcription.completed",
) -> list[dict[str, Any]]:
    server = await start_simulator(
        {
            "name": "transcribe",
            "session": {"pacing": "fast", "transcription_order": "before_response"},
            "user_utterances": [utterance],
            "responses": [{"say": "Okay."}],
        }
    )
    sdk = await sdk_connect(server)
    await _session_update(
        sdk,
        audio={
            "input": {
                "transcription": {"model": model},
                "turn_detection": {"type": "server_vad", "create_response": False},
            }
        },
    )
    text = utterance if isinstance(utterance, str) else utterance["text"]
    await sdk.speak(text)
    return await sdk.until(until)


async def test_transcription_usage_is_tokens_or_duration_by_model(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    events = await _transcribe_one(
        start_simulator, sdk_connect, model="gpt-4o-mini-transcribe", utterance="Is this right?"
    )
    usage = events[-1]["usage"]
    assert usage["type"] == "tokens"
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_token_details"]["audio_tokens"] == usage["input_tokens"] > 0
    events = await _transcribe_one(
        start_simulator, sdk_connect, model="whisper-1", utterance="Is this right?"
    )
    assert events[-1]["usage"]["type"] == "duration" and events[-1]["usage"]["seconds"] > 1
    whisper_deltas = [e["delta"] for e in events if e["type"].endswith("transcription.delta")]
    assert whisper_deltas == ["Is this right?"]  # whisper-1 is not incremental


async def test_scenario_can_fail_a_transcription(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    events = await _transcribe_one(
        start_simulator,
        sdk_connect,
        model="gpt-4o-transcribe",
        utterance={"text": "Mumble mumble.", "transcription": "failed"},
        until="conversation.item.input_audio_transcription.failed",
    )
    failed = events[-1]
    assert failed["error"]["code"] == "audio_unintelligible"
    kinds = _types(events)
    assert "conversation.item.input_audio_transcription.delta" not in kinds


async def test_diarized_transcription_sends_segments(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    events = await _transcribe_one(
        start_simulator,
        sdk_connect,
        model="gpt-4o-transcribe-diarize",
        utterance={"text": "Is this right? I think so.", "speaker": "student"},
    )
    segments = [e for e in events if e["type"].endswith("transcription.segment")]
    assert [s["text"] for s in segments] == ["Is this right?", "I think so."]
    assert {s["speaker"] for s in segments} == {"student"}
    assert (
        0 == segments[0]["start"] < segments[0]["end"] == segments[1]["start"] < segments[1]["end"]
    )


async def test_rate_limits_fall_with_usage(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator(
        _scenario({"say": "One."}, {"say": "Two."}, rate_limits={"requests": 100, "tokens": 5000})
    )
    sdk = await sdk_connect(server)
    reports = []
    for _ in range(2):
        await sdk.send({"type": "response.create"})
        events = await sdk.until("response.done")
        reports.append({r["name"]: r for r in events[1]["rate_limits"]})
    first, second = reports
    assert first["requests"] == {
        "name": "requests",
        "limit": 100,
        "remaining": 99,
        "reset_seconds": first["requests"]["reset_seconds"],
    }
    assert second["requests"]["remaining"] == 98
    assert second["tokens"]["limit"] == 5000
    assert second["tokens"]["remaining"] < first["tokens"]["remaining"] < 5000
    assert 0 < second["tokens"]["reset_seconds"] <= 60


@pytest.mark.parametrize("law", ["audio/pcmu", "audio/pcma"])
async def test_g711_in_and_out(
    start_simulator: StartSimulator, sdk_connect: SdkConnect, law: G711Law
) -> None:
    server = await start_simulator(_scenario())
    sdk = await sdk_connect(server)
    updated = await _session_update(
        sdk,
        audio={
            "input": {
                "format": {"type": law},
                "turn_detection": {"type": "server_vad", "create_response": True},
            },
            "output": {"format": {"type": law}},
        },
    )
    assert updated["session"]["audio"]["output"]["format"] == {"type": law}
    spoken = silence(300) + synthesize_speech("Is this right?") + silence(800)
    encoded = pcm24k_to_g711(spoken, law)
    assert len(encoded) == -(-len(spoken) // 6)  # 8 kHz, one byte a sample
    for offset in range(0, len(encoded), 160):  # 20 ms frames at 8 kHz
        chunk = base64.b64encode(encoded[offset : offset + 160]).decode("ascii")
        await sdk.send({"type": "input_audio_buffer.append", "audio": chunk})
    events = await sdk.until("response.done")
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    speech_end = (300 * BYTES_PER_MS + len(synthesize_speech("Is this right?"))) // BYTES_PER_MS
    assert abs(stopped["audio_end_ms"] - 500 - speech_end) <= 40
    received = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    sim = server.sessions[0]
    assert received == sim.all_generated_audio
    assert events[-1]["response"]["audio"]["output"]["format"] == {"type": law}
    # What went out decodes to speech of the spoken answer's length, at 8 kHz.
    expected_ms = len(synthesize_speech("Yes, that is right.", pitch_hz=190.0)) // BYTES_PER_MS
    assert abs(len(received) / 8 - expected_ms) <= 1
    decoded = g711_to_pcm24k(received, law)
    assert (
        max(
            abs(int.from_bytes(decoded[i : i + 2], "little", signed=True))
            for i in range(0, 48000, 2)
        )
        > 3000
    )


async def test_rough_edges_scenario(
    start_simulator: StartSimulator, sdk_connect: SdkConnect
) -> None:
    server = await start_simulator("rough_edges")
    sdk = await sdk_connect(server)
    await sdk.configure(create_response=True)
    outcomes = []
    for line in ("Mumble mumble.", "Tell me about fractions.", "Are you still there?"):
        await sdk.speak(line)
        events = await sdk.until("response.done")
        transcription = next(e["type"] for e in events if "input_audio_transcription." in e["type"])
        outcomes.append((transcription.rsplit(".", 1)[-1], events[-1]["response"]["status"]))
    assert outcomes == [
        ("failed", "incomplete"),
        ("delta", "failed"),
        ("delta", "completed"),
    ]
