"""What Earpiece adds on the voice path, next to the same scenario driven straight through the SDK.

Two latencies, both on the simulator's own clock (same process, time.monotonic):
- turn: the simulator sends `input_audio_buffer.speech_stopped` → it receives `response.create`
  (Earpiece: through the gateway's pump, context injection and event log; baseline: an SDK
  client that answers `committed` with `response.create`);
- audio: the simulator sends the first `response.output_audio.delta` → the client has it
  (Earpiece: over gRPC from the gateway; baseline: the SDK client itself).
Goal (issue 3): Earpiece adds under 5 ms at p50 and under 20 ms at p99.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from collections.abc import Callable

from openai import AsyncOpenAI
from temporalio.client import Client

from benchmarks.common import pct, throwaway_settings
from services.client import EarpieceClient, default_api_key
from services.gateway.server import running_gateway
from services.realtime.link import build_session_update
from services.realtime.simulator.scenario import Scenario
from services.realtime.simulator.server import SimulatorServer, serve_simulator
from services.realtime.simulator.session import SimulatorSession
from services.realtime.simulator.voice import silence, synthesize_speech
from services.runtime.app import infrastructure, model_link_factory
from services.runtime.config import Settings
from services.store.event_store import EventStore
from workflows.worker import session_worker

TURNS = 40
INSTRUCTIONS = (
    "You are a benchmark tutor. Respond conversationally, in 1-2 sentences, like you're sitting "
    "next to the user. When the user speaks, you answer briefly."
)
UTTERANCE = synthesize_speech("Is this right?") + silence(700)
FRAMES = [UTTERANCE[i : i + 960] for i in range(0, len(UTTERANCE), 960)]


def scenario() -> Scenario:
    return Scenario.from_dict(
        {
            "name": "bench",
            "session": {"pacing": "fast", "audio_delta_ms": 40},
            "user_utterances": ["Is this right?"] * TURNS,
            "responses": [{"say": "Yes, that is right."}] * TURNS,
        }
    )


def finals_reach(finals: list[str], count: int) -> Callable[[], bool]:
    return lambda: len(finals) >= count


def turn_latencies(session: SimulatorSession) -> list[float]:
    """speech_stopped sent → the next response.create received, per turn, in ms."""
    out: list[float] = []
    stopped: float | None = None
    for record in session.wire:
        kind = json.loads(record.text).get("type")
        if record.direction == "sent" and kind == "input_audio_buffer.speech_stopped":
            stopped = record.monotonic_s
        elif record.direction == "received" and kind == "response.create" and stopped:
            out.append((record.monotonic_s - stopped) * 1000)
            stopped = None
    return out


def first_delta_times(session: SimulatorSession) -> dict[str, float]:
    first: dict[str, float] = {}
    for record in session.wire:
        if record.direction == "sent" and '"response.output_audio.delta"' in record.text[:60]:
            first.setdefault(json.loads(record.text)["response_id"], record.monotonic_s)
    return first


async def run_earpiece(
    sim: SimulatorServer, settings: Settings, store: EventStore, client: Client
) -> tuple[list[float], list[float]]:
    received: dict[str, float] = {}
    finals: list[str] = []
    done = asyncio.Condition()
    async with (
        running_gateway(
            store=store,
            client=client,
            address="127.0.0.1:0",
            link_factory=model_link_factory(settings, simulator_url=sim.url),
        ) as gw,
        # The development key the embedded default wrote into the throwaway state folder.
        EarpieceClient.connect(gw.address, api_key=default_api_key(settings.state_dir)) as api,
    ):
        session = (await api.start_session(tenant_id="bench", instructions=INSTRUCTIONS)).session
        async with api.attach(session.session_id) as stream:

            async def receive() -> None:
                async for m in stream.messages():
                    body = m.WhichOneof("body")
                    if body == "audio":
                        received.setdefault(m.audio.response_id, time.monotonic())
                    elif body == "transcript" and m.transcript.final and m.transcript.role == 2:
                        await stream.report_playback(
                            m.transcript.response_id, played_ms=0, finished=True
                        )
                        finals.append(m.transcript.response_id)
                        async with done:
                            done.notify_all()

            task = asyncio.create_task(receive())
            for turn in range(1, TURNS + 1):
                await stream.stream_audio(FRAMES, realtime=False)
                async with asyncio.timeout(30), done:
                    await done.wait_for(finals_reach(finals, turn))
            await api.end_session(session.session_id)
            await asyncio.wait_for(task, timeout=10)
    wire = sim.sessions[0]
    firsts = first_delta_times(wire)
    audio = [(received[r] - t) * 1000 for r, t in firsts.items() if r in received]
    return turn_latencies(wire), audio


async def run_baseline(sim: SimulatorServer) -> tuple[list[float], list[float]]:
    received: dict[str, float] = {}
    sdk = AsyncOpenAI(api_key="bench", websocket_base_url=sim.url)
    async with sdk.realtime.connect(model="gpt-realtime") as conn:
        await conn.send(build_session_update(instructions=INSTRUCTIONS, voice="marin"))  # type: ignore[arg-type]
        turn_done = asyncio.Event()

        async def receive() -> None:
            async for event in conn:
                if event.type == "input_audio_buffer.committed":
                    await conn.response.create()
                elif event.type == "response.output_audio.delta":
                    received.setdefault(event.response_id, time.monotonic())
                elif event.type == "response.done":
                    turn_done.set()

        task = asyncio.create_task(receive())
        for _ in range(TURNS):
            turn_done.clear()
            for frame in FRAMES:
                await conn.input_audio_buffer.append(audio=base64.b64encode(frame).decode())
            await asyncio.wait_for(turn_done.wait(), timeout=30)
        task.cancel()
    wire = sim.sessions[0]
    firsts = first_delta_times(wire)
    audio = [(received[r] - t) * 1000 for r, t in firsts.items() if r in received]
    return turn_latencies(wire), audio


async def main() -> None:
    with throwaway_settings() as settings:
        async with (
            infrastructure(settings, temporal_port=None) as infra,
            session_worker(client=infra.client, store=infra.store),
        ):
            sim = await serve_simulator(
                host="127.0.0.1", port=0, scenario=scenario(), realtime_pacing=False
            )
            try:
                base_turn, base_audio = await run_baseline(sim)
            finally:
                await sim.stop()
            sim = await serve_simulator(
                host="127.0.0.1", port=0, scenario=scenario(), realtime_pacing=False
            )
            try:
                ep_turn, ep_audio = await run_earpiece(sim, settings, infra.store, infra.client)
            finally:
                await sim.stop()

    print(f"voice path, {TURNS} turns each, simulator clock (ms)")
    print(f"{'':36}{'p50':>9}{'p99':>9}")
    rows = [
        ("speech_stopped → response.create", base_turn, ep_turn),
        ("first audio delta → client has it", base_audio, ep_audio),
    ]
    for name, base, ours in rows:
        print(f"{name}")
        print(f"{'  SDK straight (baseline)':36}{pct(base, 0.5):9.2f}{pct(base, 0.99):9.2f}")
        print(f"{'  through Earpiece':36}{pct(ours, 0.5):9.2f}{pct(ours, 0.99):9.2f}")
        added50 = pct(ours, 0.5) - pct(base, 0.5)
        added99 = pct(ours, 0.99) - pct(base, 0.99)
        print(f"{'  Earpiece adds':36}{added50:9.2f}{added99:9.2f}   (goal < 5 / < 20)")
    print(
        f"(means: baseline {statistics.mean(base_turn):.2f}/{statistics.mean(base_audio):.2f}, "
        f"earpiece {statistics.mean(ep_turn):.2f}/{statistics.mean(ep_audio):.2f})"
    )
