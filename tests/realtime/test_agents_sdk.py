"""An outside check: the OpenAI Agents SDK's realtime model, unchanged, against the simulator.

`agents.realtime` is a third-party client of the Realtime API with its own event parsing and its
own tool loop. If the simulator drifts from what real clients expect (an event shape, an order,
a missing field), these turns fail here rather than in production. Nothing is mocked: the SDK
opens a real WebSocket to the simulator, runs the tool in-process and answers the call.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSession

from services.realtime.protocol import validate_client_event
from services.realtime.simulator import SimulatorServer, silence, synthesize_speech
from tests.realtime.conftest import StartSimulator

CHECK_SCENARIO: dict[str, Any] = {
    "name": "agents_sdk_tool_turn",
    "session": {"pacing": "fast", "id_seed": 13},
    "user_utterances": ["Is nine twelfths right?"],
    "responses": [
        {
            "label": "speak-and-call",
            "say": "Let me check that.",
            "function_calls": [{"name": "check_answer", "arguments": {"answer": "9/12"}}],
        },
        {"label": "after-tool", "say": "Yes, nine twelfths is correct."},
    ],
}

checked_answers: list[str] = []


@function_tool
def check_answer(answer: str) -> str:
    """Check the student's answer to the fractions exercise."""
    checked_answers.append(answer)
    return "correct" if answer == "9/12" else "incorrect"


def _runner() -> RealtimeRunner:
    agent: RealtimeAgent[None] = RealtimeAgent(
        name="Tutor", instructions="You are a fractions tutor.", tools=[check_answer]
    )
    return RealtimeRunner(agent)


async def _open(server: SimulatorServer) -> RealtimeSession:
    return await _runner().run(
        model_config={
            "api_key": "sim",
            "url": f"{server.url}/realtime?model=gpt-realtime",
        }
    )


async def _events_until_second_audio_end(session: RealtimeSession) -> list[Any]:
    """The SDK's events for a tool turn: speech, tool start/end, then the spoken follow-up."""
    seen: list[Any] = []
    audio_ends = 0
    async with asyncio.timeout(20):
        async for event in session:
            seen.append(event)
            if event.type == "error":
                raise AssertionError(f"the Agents SDK reported an error: {event.error}")
            if event.type == "audio_end":
                audio_ends += 1
                if audio_ends == 2:
                    return seen
    raise AssertionError("the session ended before the follow-up was spoken")


def _user_transcripts(events: list[Any]) -> list[str]:
    """The user's transcripts in the SDK's latest history among `events`."""
    updates = [e for e in events if e.type == "history_updated"]
    if not updates:
        return []
    return [
        part.transcript
        for item in updates[-1].history
        if item.type == "message" and item.role == "user"
        for part in item.content
        if part.type == "input_audio" and part.transcript
    ]


def _sdk_errors(seen: list[Any]) -> list[Any]:
    return [
        e.data
        for e in seen
        if e.type == "raw_model_event" and getattr(e.data, "type", "") in {"error", "exception"}
    ]


async def test_agents_sdk_text_turn_with_a_tool_call(start_simulator: StartSimulator) -> None:
    checked_answers.clear()
    server = await start_simulator(CHECK_SCENARIO)
    session = await _open(server)
    async with session:
        await session.send_message("Is nine twelfths right?")
        seen = await _events_until_second_audio_end(session)
    kinds = [e.type for e in seen]
    assert "tool_start" in kinds and "tool_end" in kinds
    assert kinds.index("tool_start") < kinds.index("tool_end")
    tool_end = next(e for e in seen if e.type == "tool_end")
    assert tool_end.output == "correct"
    assert checked_answers == ["9/12"]
    assert any(e.type == "audio" for e in seen)
    assert _sdk_errors(seen) == []

    sim = server.sessions[0]
    # What the SDK sent is valid GA protocol, and the tool loop closed: output, then a response.
    for event in sim.received_events():
        validate_client_event(event)
    outputs = [
        e
        for e in sim.received_events("conversation.item.create")
        if e["item"]["type"] == "function_call_output"
    ]
    assert len(outputs) == 1 and outputs[0]["item"]["output"] == "correct"
    assert sim.conversation.unanswered_call_ids() == []
    done = sim.sent_events("response.done")
    assert [d["response"]["status"] for d in done] == ["completed", "completed"]
    server.raise_if_failed()


def _seed_transcribing(first: bool) -> int:
    """A timing seed whose first turn's transcript comes before (or after) response.created."""
    return next(
        seed
        for seed in range(100)
        if (random.Random(f"transcription:{seed}:0").random() < 0.5) == first
    )


@pytest.mark.parametrize("transcript_first", [True, False], ids=["transcript-first", "late"])
async def test_agents_sdk_spoken_turn_through_semantic_vad(
    start_simulator: StartSimulator, transcript_first: bool
) -> None:
    """Audio in through the simulator's VAD (the SDK asks for semantic_vad); the SDK sees the
    turn, the transcript whichever side of response.created it lands, and the call."""
    checked_answers.clear()
    seed = _seed_transcribing(transcript_first)
    server = await start_simulator(
        {**CHECK_SCENARIO, "session": {**CHECK_SCENARIO["session"], "seed": seed}}
    )
    session = await _open(server)
    async with session:
        audio = silence(300) + synthesize_speech("Is nine twelfths right?") + silence(900)
        for offset in range(0, len(audio), 960):
            await session.send_audio(audio[offset : offset + 960])
        seen = await _events_until_second_audio_end(session)
        transcripts = _user_transcripts(seen)
        if not transcripts:  # a late transcript: keep reading until the SDK has it
            async with asyncio.timeout(5):
                async for event in session:
                    transcripts = _user_transcripts([event])
                    if transcripts:
                        break
        assert transcripts == ["Is nine twelfths right?"]
    kinds = [e.type for e in seen]
    assert "tool_end" in kinds
    assert checked_answers == ["9/12"]
    assert _sdk_errors(seen) == []
    sim = server.sessions[0]
    turn_detection = sim.session_config["audio"]["input"]["turn_detection"]
    assert turn_detection["type"] == "semantic_vad"
    kinds = [e["type"] for e in sim.sent_events()]
    transcribed = kinds.index("conversation.item.input_audio_transcription.completed")
    assert (transcribed < kinds.index("response.created")) == transcript_first
    assert sim.sent_events("input_audio_buffer.speech_started")
    assert sim.sent_events("input_audio_buffer.committed")
    assert sim.conversation.unanswered_call_ids() == []
    server.raise_if_failed()
