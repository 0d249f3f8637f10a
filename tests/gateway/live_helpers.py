"""Helpers for the live-path tests: a simulator per test, and speaking into a session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from services.client import SessionStream
from services.gateway.server import RunningGateway
from services.realtime.simulator.scenario import load_builtin_scenario
from services.realtime.simulator.server import SimulatorServer, serve_simulator
from services.realtime.simulator.voice import silence, synthesize_speech

GatewayFor = Callable[[str], AbstractAsyncContextManager[RunningGateway]]


@asynccontextmanager
async def simulator(name: str, *, realtime: bool = False) -> AsyncIterator[SimulatorServer]:
    server = await serve_simulator(
        host="127.0.0.1", port=0, scenario=load_builtin_scenario(name), realtime_pacing=realtime
    )
    try:
        yield server
    finally:
        await server.stop()


async def speak(stream: SessionStream, text: str, *, realtime: bool = False) -> None:
    """Speaks `text` into the session: as fast as possible, or paced like a microphone."""
    speech = synthesize_speech(text) + silence(900)
    await stream.stream_audio(
        [speech[i : i + 960] for i in range(0, len(speech), 960)], realtime=realtime
    )
