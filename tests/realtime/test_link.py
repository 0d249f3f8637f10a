"""ModelLink through the official SDK against the simulator (and a bare WebSocket server for
what the simulator never sends: unknown event types and non-JSON frames)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from services.realtime.link import (
    UNPARSEABLE_EVENT_TYPE,
    ModelLink,
    ModelLinkClosed,
    ModelLinkConnectFailed,
    ServerEvent,
    build_session_update,
    classify_error,
)
from services.realtime.protocol import ProtocolError, validate_client_event
from services.realtime.simulator import SimulatorServer, silence, synthesize_speech
from services.realtime.simulator.voice import BYTES_PER_MS
from services.runtime.config import Settings
from tests.realtime.conftest import StartSimulator

FRAME_BYTES = 960
TOOLS = [
    {
        "name": "mark_step_complete",
        "description": "Record that the user finished a lesson step.",
        "parameters": {
            "type": "object",
            "properties": {"lesson_id": {"type": "string"}, "step": {"type": "integer"}},
            "required": ["lesson_id", "step"],
        },
    }
]


@pytest.fixture
async def open_link() -> AsyncIterator[Any]:
    links: list[ModelLink] = []

    async def open_(server: SimulatorServer, **options: Any) -> ModelLink:
        link = ModelLink(model="gpt-realtime", simulator_url=server.url, **options)
        await link.connect()
        links.append(link)
        return link

    yield open_
    for link in links:
        await link.close()


async def _until(
    events: AsyncIterator[ServerEvent], event_type: str, *, timeout_s: float = 5.0
) -> list[ServerEvent]:
    collected: list[ServerEvent] = []
    async with asyncio.timeout(timeout_s):
        async for event in events:
            collected.append(event)
            if event.event_type == event_type:
                return collected
    raise AssertionError(f"events ended before {event_type}")


async def test_configure_sends_the_ga_session_and_texts_match_the_wire(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator("tutoring")
    sent_log: list[str] = []
    link: ModelLink = await open_link(server, on_send=sent_log.append)
    events = link.events()
    created = (await _until(events, "session.created"))[-1]

    text = await link.configure(instructions="You are a tutor.", voice="cedar", tools=TOOLS)
    updated = (await _until(events, "session.updated"))[-1]
    session = updated.data["session"]
    assert session["instructions"] == "You are a tutor."
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "cedar",
        "speed": 1.0,
    }
    turn_detection = session["audio"]["input"]["turn_detection"]
    assert turn_detection["type"] == "server_vad"
    assert turn_detection["create_response"] is False
    assert turn_detection["interrupt_response"] is True
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert session["tools"][0]["type"] == "function"
    assert session["tools"][0]["name"] == "mark_step_complete"

    simulator_session = server.sessions[0]
    assert simulator_session.received_texts == [text] == sent_log
    assert simulator_session.sent_texts[:2] == [created.raw_text, updated.raw_text]


async def test_a_turn_through_the_link_records_both_directions_verbatim(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator("tutoring")
    sent_log: list[str] = []
    link: ModelLink = await open_link(server, on_send=sent_log.append)
    events = link.events()
    received: list[ServerEvent] = []
    received += await _until(events, "session.created")
    returned = [await link.configure(instructions="Tutor.", voice="marin", tools=TOOLS)]
    received += await _until(events, "session.updated")

    audio = silence(400) + synthesize_speech("Hi! Can you help me?") + silence(700)
    frames = [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
    for frame in frames:
        returned.append(await link.append_audio(frame))
    received += await _until(events, "conversation.item.input_audio_transcription.completed")
    returned.append(await link.add_user_text(text="Context update: exercise 1 of 3"))
    returned.append(await link.create_response())
    turn = await _until(events, "response.done")
    received += turn

    session = server.sessions[0]
    assert returned == sent_log == session.received_texts
    assert [event.raw_text for event in received] == session.sent_texts
    assert bytes(session.input_audio) == audio
    for text in returned:
        validate_client_event(json.loads(text))
    assert len({json.loads(text)["event_id"] for text in returned}) == len(returned)
    assert turn[-1].data["response"]["status"] == "completed"


async def test_concurrent_senders_log_in_wire_order(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator("tutoring")
    sent_log: list[str] = []
    link: ModelLink = await open_link(server, on_send=sent_log.append)
    audio = synthesize_speech(2.0)

    async def stream_audio() -> None:
        for offset in range(0, len(audio), FRAME_BYTES):
            await link.append_audio(audio[offset : offset + FRAME_BYTES])

    async def add_context() -> None:
        for index in range(20):
            await link.add_user_text(text=f"Context update: {index}")
            await asyncio.sleep(0)

    await asyncio.gather(stream_audio(), add_context())
    session = server.sessions[0]
    await _until(link.events(), "session.created")
    async with asyncio.timeout(5):
        while len(session.received_texts) < len(sent_log):
            await asyncio.sleep(0.01)
    assert session.received_texts == sent_log


async def test_invalid_event_is_refused_before_the_wire(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator("tutoring")
    sent_log: list[str] = []
    link: ModelLink = await open_link(server, on_send=sent_log.append)
    with pytest.raises(ProtocolError) as caught:
        await link.send({"type": "response.audio.delta"})
    assert caught.value.event_type == "response.audio.delta"
    with pytest.raises(ProtocolError) as caught:
        await link.send({"type": "response.create", "response": {"modalities": ["audio"]}})
    assert caught.value.path == "response.modalities"
    assert sent_log == []
    await link.create_response()
    await _until(link.events(), "response.created")
    assert len(server.sessions[0].received_texts) == 1


async def test_helpers_and_error_classification(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator("tool_only")
    link: ModelLink = await open_link(server)
    events = link.events()
    await link.cancel_response()
    error = (await _until(events, "error"))[-1]
    assert error.data["error"]["code"] == "response_cancel_not_active"
    assert classify_error(error.data) == "recoverable"

    await link.create_response()
    done = (await _until(events, "response.done"))[-1]
    call = done.data["response"]["output"][0]
    await link.send_function_output(call_id=call["call_id"], output='{"ok": true}')
    output_item = (await _until(events, "conversation.item.done"))[-1]
    assert output_item.data["item"]["type"] == "function_call_output"
    assert server.sessions[0].conversation.unanswered_call_ids() == []

    await link.create_response()
    spoken = (await _until(events, "response.done"))[-1].data["response"]["output"][0]
    generated_ms = len(server.sessions[0].generated_audio[spoken["id"]]) // BYTES_PER_MS
    await link.truncate(item_id=spoken["id"], audio_end_ms=generated_ms + 50)
    refused = (await _until(events, "error"))[-1]
    assert "already shorter" in refused.data["error"]["message"]
    assert classify_error(refused.data) == "recoverable"
    await link.truncate(item_id=spoken["id"], audio_end_ms=generated_ms // 2)
    await _until(events, "conversation.item.truncated")
    await link.delete_item(item_id=spoken["id"])
    await _until(events, "conversation.item.deleted")


async def test_drop_ends_events_with_model_link_closed_and_loses_nothing(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator("socket_drop")
    link: ModelLink = await open_link(server)
    received: list[str] = []
    await link.create_response()
    with pytest.raises(ModelLinkClosed) as caught:
        async with asyncio.timeout(5):
            async for event in link.events():
                received.append(event.raw_text)
    assert caught.value.code == 1006
    assert "without a close frame" in caught.value.reason
    assert received == server.sessions[0].sent_texts
    assert json.loads(received[-1])["type"] == "response.done"
    with pytest.raises(ModelLinkClosed):
        await link.create_response()


async def test_session_expired_is_fatal_then_the_link_closes(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator(
        {"name": "expiry", "session": {"lifetime_s": 0.3}, "responses": [{"say": "Hi."}]}
    )
    link: ModelLink = await open_link(server)
    events = link.events()
    error = (await _until(events, "error"))[-1]
    assert error.data["error"]["code"] == "session_expired"
    assert classify_error(error.data) == "fatal"
    with pytest.raises(ModelLinkClosed) as caught:
        async with asyncio.timeout(5):
            async for _ in events:
                pass
    assert caught.value.code == 1000
    assert caught.value.reason == "session expired"


async def test_unknown_and_unparseable_events_are_yielded_not_dropped() -> None:
    frames = [
        '{"type":"session.created","event_id":"e1","session":{"type":"realtime"}}',
        '{"type":"response.brand_new_thing","event_id":"e2","detail":{"x":1}}',
        "not json at all",
        '["a", "list"]',
        '{"type":"error","event_id":"e3","error":{"type":"invalid_request_error",'
        '"code":"unknown_code","message":"?"}}',
    ]

    async def handler(connection: ServerConnection) -> None:
        for frame in frames:
            await connection.send(frame)
        await connection.close(code=1011, reason="server going away")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        link = ModelLink(model="gpt-realtime", simulator_url=f"ws://127.0.0.1:{port}/v1")
        await link.connect()
        received: list[ServerEvent] = []
        with pytest.raises(ModelLinkClosed) as caught:
            async for event in link.events():
                received.append(event)
        await link.close()
    assert [event.raw_text for event in received] == frames
    assert [event.event_type for event in received] == [
        "session.created",
        "response.brand_new_thing",
        UNPARSEABLE_EVENT_TYPE,
        UNPARSEABLE_EVENT_TYPE,
        "error",
    ]
    assert received[1].data["detail"] == {"x": 1}
    assert classify_error(received[4].data) == "recoverable"
    assert caught.value.code == 1011
    assert caught.value.reason == "server going away"


async def test_connect_failures_are_model_link_closed(start_simulator: StartSimulator) -> None:
    server = await start_simulator("tutoring", api_key="the-right-key")
    rejected = ModelLink(model="gpt-realtime", simulator_url=server.url)
    with pytest.raises(ModelLinkConnectFailed, match="HTTP 401"):
        await rejected.connect()
    port = server.port
    await server.stop()
    refused = ModelLink(model="gpt-realtime", simulator_url=f"ws://127.0.0.1:{port}/v1")
    with pytest.raises(ModelLinkConnectFailed, match="cannot connect"):
        await refused.connect()


async def test_close_is_quick_even_when_nobody_reads(
    start_simulator: StartSimulator, open_link: Any
) -> None:
    server = await start_simulator(
        {"name": "chatty", "session": {"pacing": "fast"}, "responses": [{"say": "Word. " * 200}]}
    )
    link: ModelLink = await open_link(server)
    await link.create_response()
    await asyncio.sleep(0.2)  # the server fills the socket; nobody reads
    loop = asyncio.get_running_loop()
    started = loop.time()
    await link.close()
    assert loop.time() - started < 2.0
    assert [event async for event in link.events()] == []


def test_targets_and_settings() -> None:
    openai_link = ModelLink(model="gpt-realtime", api_key="sk-test", simulator_url="ws://x/v1")
    assert openai_link.target == "openai"
    simulator_link = ModelLink(model="gpt-realtime", simulator_url="ws://127.0.0.1:1/v1")
    assert simulator_link.target == "simulator"
    with pytest.raises(ValueError, match="API key or a simulator URL"):
        ModelLink(model="gpt-realtime")
    settings = Settings.from_env(
        {"EARPIECE_SIMULATOR_URL": "ws://127.0.0.1:9/v1", "OPENAI_REALTIME_MODEL": "gpt-realtime-2"}
    )
    from_settings = ModelLink.from_settings(settings)
    assert (from_settings.target, from_settings.model) == ("simulator", "gpt-realtime-2")


def test_session_update_is_valid_ga() -> None:
    event = build_session_update(instructions="x", voice="marin", tools=TOOLS)
    validate_client_event(event)
    without_transcription = build_session_update(
        instructions="x", voice="marin", transcription_model=None, interrupt_response=False
    )
    validate_client_event(without_transcription)
    audio_input = without_transcription["session"]["audio"]["input"]
    assert audio_input["transcription"] is None
    assert audio_input["turn_detection"]["interrupt_response"] is False


@pytest.mark.parametrize(
    ("error", "severity"),
    [
        (
            {"type": "invalid_request_error", "code": "conversation_already_has_active_response"},
            "recoverable",
        ),
        ({"type": "invalid_request_error", "code": "response_cancel_not_active"}, "recoverable"),
        ({"type": "invalid_request_error", "code": "invalid_value"}, "recoverable"),
        (
            {"type": "invalid_request_error", "code": "input_audio_buffer_commit_empty"},
            "recoverable",
        ),
        ({"type": "server_error", "code": None}, "recoverable"),
        ({"type": "invalid_request_error", "code": "session_expired"}, "fatal"),
        ({"type": "invalid_request_error", "code": "invalid_api_key"}, "fatal"),
        ({"type": "authentication_error", "code": None}, "fatal"),
        ({"type": "insufficient_quota", "code": "insufficient_quota"}, "fatal"),
    ],
)
def test_classify_error(error: dict[str, Any], severity: str) -> None:
    assert classify_error({"type": "error", "event_id": "e", "error": error}) == severity
    assert classify_error(error) == severity
