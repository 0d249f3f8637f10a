"""`earpiece demo`: a scripted three-turn tutoring session through the real gRPC API.

It starts everything on the embedded defaults (Postgres, the Temporal dev server, the built-in
Realtime simulator), speaks three user turns into the session with the screen changing between
them, lets one tool call run after the tutor finishes speaking, then prints the session's
timeline from the event log and says where the data lives.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from services.api.earpiece.v1 import session_pb2 as pb
from services.client import EarpieceClient, SessionStream
from services.runtime.config import PROJECT_ROOT, Settings

PERSONA = PROJECT_ROOT / "examples" / "personas" / "screen_tutor.yaml"
TOOLS = ("highlight_element", "mark_step_complete")
BYTES_PER_MS = 48

# (screen state, what the user says, assistant responses expected after it in total)
SCRIPT: list[tuple[dict[str, object], str, int]] = [
    (
        {"app": "fractions-101", "exercise": "3/4 + 1/3", "step": 1},
        "Hi! Can you help me with the fractions exercise on my screen?",
        1,
    ),
    (
        {"app": "fractions-101", "exercise": "3/4 + 1/3", "step": 1, "typed": "12"},
        "I think the common denominator is twelve.",
        3,
    ),
    (
        {"app": "fractions-101", "exercise": "3/4 + 1/3", "step": 2, "typed": "9/12"},
        "So three quarters is nine twelfths?",
        4,
    ),
]


@dataclass
class Player:
    """Plays assistant audio as a speaker would (in real time) and reports when it is done."""

    stream: SessionStream
    audio: dict[str, bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    started: dict[str, float] = field(default_factory=dict)
    transcripts: list[str] = field(default_factory=list)
    tool_states: list[tuple[str, int]] = field(default_factory=list)
    responses_done: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reports: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> None:
        async for message in self.stream.messages():
            body = message.WhichOneof("body")
            if body == "audio":
                rid = message.audio.response_id
                self.started.setdefault(rid, time.monotonic())
                self.audio[rid] += message.audio.pcm16
            elif body == "transcript" and message.transcript.final:
                if message.transcript.role == pb.Transcript.ROLE_ASSISTANT:
                    self.transcripts.append(message.transcript.text)
                    task = asyncio.create_task(self._report_when_played(message.transcript))
                    self._reports.add(task)
            elif body == "tool":
                self.tool_states.append((message.tool.name, message.tool.state))

    async def _report_when_played(self, transcript: pb.Transcript) -> None:
        rid = transcript.response_id
        duration = len(self.audio[rid]) / BYTES_PER_MS / 1000
        finish_at = self.started.get(rid, time.monotonic()) + duration
        await asyncio.sleep(max(0.0, finish_at - time.monotonic()))
        await self.stream.report_playback(rid, played_ms=int(duration * 1000), finished=True)
        async with self.changed:
            self.responses_done += 1
            self.changed.notify_all()

    async def wait_for_responses(self, count: int, *, timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(lambda: self.responses_done >= count)


async def drive_tutoring_session(
    client: EarpieceClient, *, tenant_id: str = "demo", realtime: bool = True
) -> tuple[str, Player]:
    """Runs the scripted conversation; returns the session id and what the client received."""
    from services.realtime.simulator.voice import silence, synthesize_speech

    started = await client.start_session(
        tenant_id=tenant_id, persona_yaml=PERSONA.read_text(), tools=list(TOOLS)
    )
    session_id = started.session.session_id
    async with client.attach(session_id) as stream:
        player = Player(stream)
        receiver = asyncio.create_task(player.run())
        for screen, utterance, expected in SCRIPT:
            await stream.send_screen_state(screen)
            speech = synthesize_speech(utterance) + silence(900)
            frames = [speech[i : i + 960] for i in range(0, len(speech), 960)]
            await stream.stream_audio(frames, realtime=realtime)
            await player.wait_for_responses(expected)
        await client.end_session(session_id, reason="demo finished")
        await asyncio.wait_for(receiver, timeout=10)
    return session_id, player


async def run_demo(settings: Settings) -> int:
    from services.replay.timeline import build_timeline
    from services.runtime.app import infrastructure, serving_gateway
    from workflows.worker import session_worker

    print("earpiece demo: starting Postgres, Temporal, the Realtime simulator, worker, gateway")
    async with (
        infrastructure(settings, temporal_port=None) as infra,
        session_worker(client=infra.client, store=infra.store),
        serving_gateway(infra, address="127.0.0.1:0") as (gw, simulator_url),
    ):
        print(f"  gateway on {gw.address}; model: {simulator_url or 'OpenAI Realtime'}")
        print("driving a three-turn tutoring session through the gRPC API (about 30 s)...")
        async with EarpieceClient.connect(gw.address, api_key=infra.dev_key) as client:
            session_id, player = await drive_tutoring_session(client)
        timeline = await build_timeline(infra.store.read_events(session_id))
        print()
        print(f"session {session_id}: timeline from the event log")
        print(timeline.render())
        received = sum(len(a) for a in player.audio.values())
        print(f"the client received {received / BYTES_PER_MS / 1000:.1f} s of assistant audio")
    print()
    print(
        f"data lives in {settings.state_dir} (Postgres in postgres/, Temporal in temporal.sqlite,"
        " the development API key in dev-key)"
    )
    print(
        f"replay it: .venv/bin/earpiece replay {session_id}  |  delete the folder to start afresh"
    )
    return 0


async def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    return await run_demo(settings)


def add_demo_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("demo", help="run a scripted live session and print its timeline")
    parser.set_defaults(run=_cmd_demo)
