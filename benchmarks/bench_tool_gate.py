"""The tool gate's cost: playback finished → the tool activity starts, on the local Temporal dev
server, next to a bare baseline measured in the same run (a minimal workflow that schedules one
activity when it receives a signal).

Earpiece's path: the client reports playback over gRPC → the gateway records it and signals the
session workflow → the workflow's gate opens → the run_tool activity starts. Both clocks are
this process's wall clock. Goal (issue 5): within 1.25x of the baseline at p50, p99 < 150 ms.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from benchmarks.baseline_workflow import SignalThenActivity, bench_touch
from benchmarks.common import pct, throwaway_settings
from services.api.earpiece.v1 import session_pb2 as pb
from services.client import EarpieceClient, default_api_key
from services.gateway.server import running_gateway
from services.realtime.simulator.scenario import Scenario
from services.realtime.simulator.server import serve_simulator
from services.realtime.simulator.voice import silence, synthesize_speech
from services.runtime.app import infrastructure, model_link_factory
from services.runtime.config import Settings
from services.store.event_store import EventStore
from workflows.activities.session_store import SessionStoreActivities
from workflows.messages import SESSION_TASK_QUEUE, RunToolInput
from workflows.session_workflow import SessionWorkflow
from workflows.tools.activities import ToolActivities

TURNS = 30
# Turns without a tool, spoken after the tool turns, so the history each kind costs is measured.
PLAIN_TURNS = 30
# The yardstick: one user turn every 10 s.
TURNS_PER_HOUR = 360
BASELINE_QUEUE = "bench-baseline"
INSTRUCTIONS = (
    "You are a benchmark tutor. Respond conversationally, in 1-2 sentences, like you're sitting "
    "next to the user. You call highlight_element when it helps. Always finish your current "
    "sentence before you call a tool."
)
SPEECH = synthesize_speech("Show me.") + silence(700)
FRAMES = [SPEECH[i : i + 960] for i in range(0, len(SPEECH), 960)]


def scenario() -> Scenario:
    turn = [
        {
            "say": "Here it is.",
            "function_calls": [
                {"name": "highlight_element", "arguments": {"element_id": "x"}, "at": "after_audio"}
            ],
        },
        {"say": "Done."},
    ]
    return Scenario.from_dict(
        {
            "name": "bench-gate",
            "session": {"pacing": "fast", "audio_delta_ms": 100},
            "user_utterances": ["Show me."] * (TURNS + PLAIN_TURNS),
            "responses": turn * TURNS + [{"say": "Sure."}] * PLAIN_TURNS,
        }
    )


@dataclass
class History:
    """Workflow history events: at start, after the tool turns, after the plain turns."""

    marks: list[int] = field(default_factory=list)


async def history_length(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


# ---- the bare baseline ----


async def run_baseline(client: Client) -> list[float]:
    out: list[float] = []
    async with Worker(
        client,
        task_queue=BASELINE_QUEUE,
        workflows=[SignalThenActivity],
        activities=[bench_touch],
    ):
        for _ in range(TURNS):
            handle = await client.start_workflow(
                SignalThenActivity.run, id=f"bench-{uuid.uuid4().hex}", task_queue=BASELINE_QUEUE
            )
            await asyncio.sleep(0.05)  # the workflow is waiting, as a session's gate is
            await handle.signal(SignalThenActivity.go, time.time())
            out.append(await handle.result())
    return out


# ---- Earpiece ----


class TimedTools(ToolActivities):
    """The real tool activity, noting when each call starts."""

    started: dict[str, float] = {}

    @activity.defn(name="run_tool")
    async def run_tool(self, input: RunToolInput) -> str:
        TimedTools.started[input.call.response_id] = time.time()
        return await super().run_tool(input)


def finals_reach(finals: list[str], count: int) -> Callable[[], bool]:
    return lambda: len(finals) >= count


async def run_earpiece(
    settings: Settings, store: EventStore, client: Client, history: History
) -> list[float]:
    reported: dict[str, float] = {}
    finals: list[str] = []
    changed = asyncio.Condition()
    sim = await serve_simulator(
        host="127.0.0.1", port=0, scenario=scenario(), realtime_pacing=False
    )
    tools = TimedTools(pool=store.pool)
    try:
        async with (
            Worker(
                client,
                task_queue=SESSION_TASK_QUEUE,
                workflows=[SessionWorkflow],
                activities=[
                    SessionStoreActivities(store=store).record_session_end,
                    tools.run_tool,
                ],
            ),
            running_gateway(
                store=store,
                client=client,
                address="127.0.0.1:0",
                link_factory=model_link_factory(settings, simulator_url=sim.url),
            ) as gw,
            # The development key the embedded default wrote into the throwaway state folder.
            EarpieceClient.connect(gw.address, api_key=default_api_key(settings.state_dir)) as api,
        ):
            started = await api.start_session(
                tenant_id="bench", instructions=INSTRUCTIONS, tools=["highlight_element"]
            )
            session_id = started.session.session_id
            async with api.attach(session_id) as stream:
                first_audio: dict[str, float] = {}
                audio_ms: dict[str, float] = {}

                async def play_out(rid: str) -> None:
                    # A client reports `finished` once its speaker has played everything.
                    due = first_audio.get(rid, time.time()) + audio_ms.get(rid, 0.0) / 1000
                    await asyncio.sleep(max(0.0, due - time.time()))
                    reported[rid] = time.time()
                    await stream.report_playback(
                        rid, played_ms=int(audio_ms.get(rid, 0.0)), finished=True
                    )
                    finals.append(rid)
                    async with changed:
                        changed.notify_all()

                async def receive() -> None:
                    async for m in stream.messages():
                        if m.WhichOneof("body") == "audio":
                            rid = m.audio.response_id
                            first_audio.setdefault(rid, time.time())
                            audio_ms[rid] = audio_ms.get(rid, 0.0) + len(m.audio.pcm16) / 48
                        if (
                            m.WhichOneof("body") == "transcript"
                            and m.transcript.final
                            and m.transcript.role == pb.Transcript.ROLE_ASSISTANT
                        ):
                            players.append(asyncio.create_task(play_out(m.transcript.response_id)))

                players: list[asyncio.Task[None]] = []
                task = asyncio.create_task(receive())
                history.marks.append(await history_length(client, session_id))
                for turn in range(1, TURNS + 1):
                    await stream.stream_audio(FRAMES, realtime=False)
                    async with asyncio.timeout(30), changed:
                        await changed.wait_for(finals_reach(finals, 2 * turn))
                await asyncio.sleep(0.5)  # the last outcome's workflow task completes
                history.marks.append(await history_length(client, session_id))
                for turn in range(1, PLAIN_TURNS + 1):
                    await stream.stream_audio(FRAMES, realtime=False)
                    async with asyncio.timeout(30), changed:
                        await changed.wait_for(finals_reach(finals, 2 * TURNS + turn))
                await asyncio.sleep(0.5)
                history.marks.append(await history_length(client, session_id))
                await api.end_session(session_id)
                await asyncio.wait_for(task, timeout=10)
    finally:
        await sim.stop()
    return [(TimedTools.started[r] - reported[r]) * 1000 for r in TimedTools.started]


async def main() -> None:
    with throwaway_settings() as settings:
        async with infrastructure(settings, temporal_port=None) as infra:
            baseline = await run_baseline(infra.client)
            history = History()
            gate = await run_earpiece(settings, infra.store, infra.client, history)
    print(f"playback finished → tool activity starts, {TURNS} calls each (ms)")
    print(f"{'':40}{'p50':>9}{'p99':>9}")
    base50, base99 = pct(baseline, 0.5), pct(baseline, 0.99)
    print(f"{'bare baseline (signal → activity)':40}{base50:9.1f}{base99:9.1f}")
    print(
        f"{'Earpiece gate (gRPC report → activity)':40}{pct(gate, 0.5):9.1f}{pct(gate, 0.99):9.1f}"
    )
    ratio = pct(gate, 0.5) / pct(baseline, 0.5)
    print(f"ratio at p50: {ratio:.2f}x (goal ≤ 1.25x); p99 {pct(gate, 0.99):.1f} ms (goal < 150)")
    start, after_tools, after_plain = history.marks
    per_tool_turn = (after_tools - start) / TURNS
    per_plain_turn = (after_plain - after_tools) / PLAIN_TURNS
    print("\nsession workflow history (goal ≤ 2,000 events per session-hour, 1 turn every 10 s)")
    print(f"  per turn with a tool call: {per_tool_turn:.1f} events ({TURNS} turns measured)")
    print(
        f"  per turn without one:      {per_plain_turn:.1f} events ({PLAIN_TURNS} turns measured)"
    )
    for share in (1.0, 0.5, 0.25):
        hour = TURNS_PER_HOUR * (share * per_tool_turn + (1 - share) * per_plain_turn)
        print(f"  per session-hour, {share:.0%} of turns with a tool: {hour:,.0f} events")
