"""What Earpiece adds on the voice path, measured against the same scenario driven straight
through the SDK, turn for turn in one run.

Two latencies, both on the simulator's own clock (same process, time.monotonic):
- turn: the simulator sends `input_audio_buffer.speech_stopped` → it receives `response.create`
  (Earpiece: through the gateway's pump, context injection and event log; baseline: an SDK
  client that answers `committed` with `response.create`);
- audio: the simulator sends the first `response.output_audio.delta` → the client has it
  (Earpiece: over gRPC from the gateway; baseline: the SDK client itself).

Both sessions are open at once, each on a simulator of its own, and speak in alternation (AB,
BA, AB, ...), so machine drift hits both sides of every pair alike. What Earpiece adds is taken
per pair (its turn minus the baseline turn beside it) and its quantiles are reported: the
difference of two separate p99s over a few dozen samples was the difference of two maxima.
Goal (issue 3): Earpiece adds under 5 ms at p50 and under 20 ms at p99.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

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

# Pairs measured, after warm-up pairs that are left out (first connections, caches).
PAIRS = 500
WARMUP = 10
TURNS = PAIRS + WARMUP
INSTRUCTIONS = (
    "You are a benchmark tutor. Respond conversationally, in 1-2 sentences, like you're sitting "
    "next to the user. When the user speaks, you answer briefly."
)
UTTERANCE = synthesize_speech("Is this right?") + silence(700)
FRAMES = [UTTERANCE[i : i + 960] for i in range(0, len(UTTERANCE), 960)]

# One spoken turn on one side: speak, and return once the answer is complete.
Turn = Callable[[], Awaitable[None]]


def scenario() -> Scenario:
    return Scenario.from_dict(
        {
            "name": "bench",
            "session": {"pacing": "fast", "audio_delta_ms": 40},
            "user_utterances": ["Is this right?"] * TURNS,
            "responses": [{"say": "Yes, that is right."}] * TURNS,
        }
    )


@asynccontextmanager
async def simulator() -> AsyncIterator[SimulatorServer]:
    server = await serve_simulator(
        host="127.0.0.1", port=0, scenario=scenario(), realtime_pacing=False
    )
    try:
        yield server
    finally:
        await server.stop()


def turn_latencies(session: SimulatorSession) -> list[float]:
    """speech_stopped sent → the next response.create received, per turn in order, in ms."""
    out: list[float] = []
    stopped: float | None = None
    for record in session.wire:
        head = record.text[:80]  # skip parsing the thousands of audio appends
        if '"input_audio_buffer.speech_stopped"' not in head and '"response.create"' not in head:
            continue
        kind = json.loads(record.text).get("type")
        if record.direction == "sent" and kind == "input_audio_buffer.speech_stopped":
            stopped = record.monotonic_s
        elif record.direction == "received" and kind == "response.create" and stopped:
            out.append((record.monotonic_s - stopped) * 1000)
            stopped = None
    return out


def audio_latencies(session: SimulatorSession, received: dict[str, float]) -> list[float]:
    """First audio delta sent → the client has it, per response in order, in ms."""
    first: dict[str, float] = {}
    for record in session.wire:
        if record.direction == "sent" and '"response.output_audio.delta"' in record.text[:60]:
            first.setdefault(json.loads(record.text)["response_id"], record.monotonic_s)
    return [(received[r] - t) * 1000 for r, t in first.items() if r in received]


@asynccontextmanager
async def earpiece_side(
    sim: SimulatorServer,
    settings: Settings,
    store: EventStore,
    client: Client,
    received: dict[str, float],
) -> AsyncIterator[Turn]:
    """A session through a gateway of its own; yields its turn."""
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

            async def turn() -> None:
                want = len(finals) + 1
                await stream.stream_audio(FRAMES, realtime=False)
                async with asyncio.timeout(30), done:
                    await done.wait_for(lambda: len(finals) >= want)

            task = asyncio.create_task(receive())
            yield turn
            await api.end_session(session.session_id)
            await asyncio.wait_for(task, timeout=10)


@asynccontextmanager
async def baseline_side(sim: SimulatorServer, received: dict[str, float]) -> AsyncIterator[Turn]:
    """The same turn through the bare SDK: no log, no gateway, no gRPC; yields its turn."""
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

        async def turn() -> None:
            turn_done.clear()
            for frame in FRAMES:
                await conn.input_audio_buffer.append(audio=base64.b64encode(frame).decode())
            await asyncio.wait_for(turn_done.wait(), timeout=30)

        task = asyncio.create_task(receive())
        yield turn
        task.cancel()


def paired(ours: list[float], base: list[float], what: str) -> list[float]:
    """Earpiece minus its paired baseline sample, warm-up pairs left out."""
    if len(ours) != TURNS or len(base) != TURNS:
        raise RuntimeError(f"{what}: {len(ours)} Earpiece and {len(base)} baseline samples")
    return [o - b for o, b in zip(ours[WARMUP:], base[WARMUP:], strict=True)]


async def main() -> None:
    ep_received: dict[str, float] = {}
    base_received: dict[str, float] = {}
    with throwaway_settings() as settings:
        async with (
            infrastructure(settings, temporal_port=None) as infra,
            session_worker(client=infra.client, store=infra.store),
            simulator() as ep_sim,
            simulator() as base_sim,
            earpiece_side(ep_sim, settings, infra.store, infra.client, ep_received) as ours,
            baseline_side(base_sim, base_received) as base,
        ):
            for i in range(TURNS):
                first, second = (base, ours) if i % 2 == 0 else (ours, base)
                await first()
                await second()
        ep_wire, base_wire = ep_sim.sessions[0], base_sim.sessions[0]
        rows = [
            (
                "speech_stopped → response.create",
                turn_latencies(base_wire),
                turn_latencies(ep_wire),
            ),
            (
                "first audio delta → client has it",
                audio_latencies(base_wire, base_received),
                audio_latencies(ep_wire, ep_received),
            ),
        ]

    print(
        f"voice path: {PAIRS} pairs per metric (after {WARMUP} warm-up pairs), Earpiece and the "
        "SDK straight taking turns AB/BA, simulator clock (ms)"
    )
    print(f"{'':40}{'p50':>9}{'p99':>9}{'mean':>9}{'n':>6}")
    for name, base_ms, ours_ms in rows:
        added = paired(ours_ms, base_ms, name)
        base_ms, ours_ms = base_ms[WARMUP:], ours_ms[WARMUP:]
        print(name)
        for label, values in (
            ("  SDK straight (baseline)", base_ms),
            ("  through Earpiece", ours_ms),
            ("  Earpiece adds, per pair", added),
        ):
            print(
                f"{label:40}{pct(values, 0.5):9.2f}{pct(values, 0.99):9.2f}"
                f"{statistics.mean(values):9.2f}{len(values):6d}",
                end="",
            )
            print("   (goal < 5 / < 20)" if values is added else "")
