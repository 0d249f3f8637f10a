"""The simulator over a real WebSocket, reached through the official SDK: no mocks.

`start_simulator` runs a simulator on a free loopback port and, at teardown, stops it and fails
the test if the simulator built an invalid event. `sdk_connect` opens an SDK connection and
wraps it so tests read events as dicts while every received text is kept verbatim and checked
against the SDK's GA types.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed

from services.realtime.protocol import validate_server_event
from services.realtime.simulator import (
    Scenario,
    SimulatorServer,
    load_builtin_scenario,
    serve_simulator,
)
from services.realtime.simulator.voice import silence, synthesize_speech

FRAME_BYTES = 960  # 20 ms of PCM16 at 24 kHz


class SdkSession:
    """An SDK Realtime connection plus the verbatim record of what came back."""

    def __init__(self, connection: AsyncRealtimeConnection) -> None:
        self.connection = connection
        self.received_texts: list[str] = []
        self.sent_texts: list[str] = []

    async def next_event(self, *, timeout_s: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv_bytes(), timeout=timeout_s)
        text = raw.decode("utf-8")
        self.received_texts.append(text)
        data: dict[str, Any] = json.loads(text)
        validate_server_event(data)  # every event the simulator sends is GA, with no extra keys
        return data

    async def until(self, event_type: str, *, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Events up to and including the first of `event_type`."""
        collected: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.next_event(timeout_s=timeout_s)
                collected.append(event)
                if event["type"] == event_type:
                    return collected

    async def close(self) -> None:
        """Close while still reading: a client that stops reading leaves the server blocked on
        a full socket, and the close handshake then waits for its timeout."""

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await self.connection.recv_bytes()

        draining = asyncio.create_task(drain())
        await self.connection.close()
        await draining

    async def send(self, event: dict[str, Any]) -> str:
        text = json.dumps(event)
        self.sent_texts.append(text)
        await self.connection.send_raw(text)
        return text

    async def send_text(self, text: str) -> None:
        self.sent_texts.append(text)
        await self.connection.send_raw(text)

    async def configure(
        self, *, create_response: bool = False, transcription: bool = True, **vad: Any
    ) -> dict[str, Any]:
        await self.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "transcription": (
                                {"model": "gpt-4o-mini-transcribe"} if transcription else None
                            ),
                            "turn_detection": {
                                "type": "server_vad",
                                "create_response": create_response,
                                "interrupt_response": True,
                                **vad,
                            },
                        }
                    },
                },
            }
        )
        return (await self.until("session.updated"))[-1]

    async def append(self, pcm: bytes) -> None:
        """Stream audio in 20 ms frames, as a microphone would (without real-time waits)."""
        for offset in range(0, len(pcm), FRAME_BYTES):
            chunk = base64.b64encode(pcm[offset : offset + FRAME_BYTES]).decode("ascii")
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})

    async def speak(self, text: str, *, lead_ms: int = 300, tail_ms: int = 700) -> bytes:
        """Say `text` into the VAD with silence around it; returns the audio sent."""
        audio = silence(lead_ms) + synthesize_speech(text) + silence(tail_ms)
        await self.append(audio)
        return audio


StartSimulator = Callable[..., Awaitable[SimulatorServer]]
SdkConnect = Callable[..., Awaitable[SdkSession]]


@pytest.fixture
async def start_simulator() -> AsyncIterator[StartSimulator]:
    servers: list[SimulatorServer] = []

    async def start(
        scenario: Scenario | str | dict[str, Any], *, realtime_pacing: bool = False, **options: Any
    ) -> SimulatorServer:
        if isinstance(scenario, str):
            scenario = load_builtin_scenario(scenario)
        elif isinstance(scenario, dict):
            scenario = Scenario.from_dict(scenario)
        server = await serve_simulator(
            host="127.0.0.1", port=0, scenario=scenario, realtime_pacing=realtime_pacing, **options
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
    for server in servers:
        server.raise_if_failed()


@pytest.fixture
async def sdk_connect() -> AsyncIterator[SdkConnect]:
    sessions: list[SdkSession] = []

    async def connect(server: SimulatorServer, *, model: str = "gpt-realtime") -> SdkSession:
        client = AsyncOpenAI(api_key="sim", websocket_base_url=server.url)
        connection = await client.realtime.connect(model=model).enter()
        session = SdkSession(connection)
        sessions.append(session)
        created = await session.next_event()
        assert created["type"] == "session.created"
        return session

    yield connect
    for session in sessions:
        await session.close()
