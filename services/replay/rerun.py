"""Prompt-regression re-runs: `earpiece rerun SESSION_ID --persona new.yaml`.

The recorded user side of a session is played into a new session that uses another persona,
through the real gRPC API with the client library: the user's audio frames at their original
timing, screen states and text at their original moments, and playback reports like the
original client's (a client that reported playback reports the new session's audio as a real
player would, playing it in real time and saying when it stopped; one that never reported
does not). The re-run is itself a recorded session, linked to its source by `rerun_of` in its
configuration (and so in its `session.started` event).

Then both sessions are rebuilt from their logs and compared turn by turn: what the assistant
said as heard, its words and spoken seconds (verbosity), tool calls in order, interruptions,
and each persona's lint findings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from services.api.earpiece.v1 import session_pb2 as spb
from services.client import EarpieceClient, SessionStream
from services.prompts.prepare import PromptError, PromptRejected, prepare_prompt
from services.replay.analysis import BYTES_PER_MS, Analysis, analyse
from services.runtime.config import Settings
from services.store.event_store import EventStore
from services.store.events import SessionRecord

QUIET_S = 2.5  # after the last input, the re-run ends once nothing has happened for this long


@dataclass
class Step:
    at_s: float  # since the source client attached
    kind: str  # audio, screen, text
    pcm: bytes = b""
    state: dict[str, Any] | None = None
    text: str = ""


@dataclass
class UserSide:
    steps: list[Step]
    reports_playback: bool
    tools: list[str]
    tenant_id: str
    voice: str
    echo_gate: bool


async def recorded_user_side(store: EventStore, record: SessionRecord) -> UserSide:
    """The source client's inputs with their original timing, from the log and its audio."""
    start: datetime | None = None
    steps: list[Step] = []
    reports = False
    offsets: dict[int, datetime] = {}
    async for e in store.read_events(record.session_id):
        if e.kind == "client.attach" and start is None:
            start = e.receive_time
        if e.source != "client":
            continue
        if start is None:
            start = e.receive_time
        at = (e.receive_time - start).total_seconds()
        if e.kind == "client.audio" and e.audio is not None:
            offsets[e.audio.offset] = e.receive_time
        elif e.kind == "client.screen_state":
            steps.append(Step(at, "screen", state=e.payload.get("state")))
        elif e.kind == "client.text":
            steps.append(Step(at, "text", text=str(e.payload.get("text", ""))))
        elif e.kind == "client.playback":
            reports = True
    if start is not None:
        async for frame in store.read_audio(record.session_id, stream="input"):
            received = offsets.get(frame.offset, frame.received_at)
            steps.append(Step((received - start).total_seconds(), "audio", pcm=frame.data))
    steps.sort(key=lambda s: s.at_s)
    config = record.config
    return UserSide(
        steps=steps,
        reports_playback=reports,
        tools=[str(t) for t in config.get("tools", [])],
        tenant_id=record.tenant_id,
        voice=str((config.get("request") or {}).get("voice", "") or ""),
        echo_gate=bool(config.get("echo_gate", False)),
    )


@dataclass
class Player:
    """Plays the re-run's assistant audio as the source's client did: in real time from the
    first frame, stopping when told, reporting playback if the source client reported."""

    stream: SessionStream
    reports: bool
    audio: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    started: dict[str, float] = field(default_factory=dict)
    last_activity: float = field(default_factory=time.monotonic)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> None:
        async for message in self.stream.messages():
            self.last_activity = time.monotonic()
            body = message.WhichOneof("body")
            if body == "audio":
                rid = message.audio.response_id
                self.started.setdefault(rid, time.monotonic())
                self.audio[rid] += len(message.audio.pcm16)
            elif body == "transcript" and message.transcript.final and self.reports:
                if message.transcript.role == spb.Transcript.ROLE_ASSISTANT:
                    task = asyncio.create_task(self._report(message.transcript.response_id))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            elif body == "stop_playback" and self.reports:
                rid = message.stop_playback.response_id
                if rid in self.started:
                    played = int((time.monotonic() - self.started[rid]) * 1000)
                    played = min(played, self.audio[rid] // BYTES_PER_MS)
                    self.started.pop(rid)
                    await self.stream.report_playback(rid, played_ms=played, finished=False)

    async def _report(self, rid: str) -> None:
        duration = self.audio[rid] / BYTES_PER_MS / 1000
        began = self.started.get(rid, time.monotonic())
        await asyncio.sleep(max(0.0, began + duration - time.monotonic()))
        if rid in self.started:  # not stopped by a barge-in meanwhile
            await self.stream.report_playback(rid, played_ms=int(duration * 1000), finished=True)
        self.last_activity = time.monotonic()


async def play_user_side(
    client: EarpieceClient,
    source: SessionRecord,
    side: UserSide,
    persona_yaml: str,
    *,
    tenant_id: str | None = None,
    quiet_s: float = QUIET_S,
    timeout_s: float = 600,
) -> str:
    """Starts the re-run session, plays the recorded user side into it, ends it; returns its id."""
    config = spb.SessionConfig(
        persona_yaml=persona_yaml,
        tools=side.tools,
        voice=side.voice,
        echo_gate=side.echo_gate,
        rerun_of=source.session_id,
    )
    started = await client.sessions.StartSession(
        spb.StartSessionRequest(tenant_id=tenant_id or side.tenant_id, config=config)
    )
    session_id = str(started.session.session_id)
    async with asyncio.timeout(timeout_s), client.attach(session_id) as stream:
        player = Player(stream, side.reports_playback)
        receiver = asyncio.create_task(player.run())
        begin = time.monotonic()
        for step in side.steps:
            delay = begin + step.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if step.kind == "audio":
                await stream.send_audio(step.pcm)
            elif step.kind == "screen" and step.state is not None:
                await stream.send_screen_state(step.state)
            elif step.kind == "text":
                await stream.send_text(step.text)
        player.last_activity = time.monotonic()
        while time.monotonic() - player.last_activity < quiet_s:
            await asyncio.sleep(0.1)
        await client.end_session(session_id, reason=f"re-run of {source.session_id} finished")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(receiver, timeout=10)
        receiver.cancel()
    return session_id


# ---- the comparison ------------------------------------------------------------------------


def lint_findings(request: dict[str, Any], tools: list[str]) -> list[dict[str, object]]:
    """Every lint finding of a session's prompt (errors too: a re-run may try a bad one)."""
    try:
        prepared = prepare_prompt(
            persona_yaml=request.get("persona_yaml") or None,
            instructions=request.get("instructions") or None,
            tools=tools,
        )
    except PromptRejected as exc:
        return [f.to_dict() for f in exc.findings]
    except PromptError as exc:
        return [{"severity": "error", "rule": "invalid", "message": str(exc)}]
    return [f.to_dict() for f in prepared.warnings]


@dataclass
class TurnSide:
    assistant: str  # as heard
    words: int
    spoken_s: float
    tools: list[str]
    interrupted: bool


@dataclass
class TurnComparison:
    turn: int
    user: str
    source: TurnSide | None
    rerun: TurnSide | None


@dataclass
class Comparison:
    source_id: str
    rerun_id: str
    turns: list[TurnComparison]
    source_lint: list[dict[str, object]]
    rerun_lint: list[dict[str, object]]
    totals: dict[str, dict[str, float]]


def _side(a: Analysis, index: int) -> TurnSide | None:
    if index >= len(a.turns):
        return None
    turn = a.turns[index]
    responses = [a.responses[r] for r in turn.responses if r in a.responses]
    heard = " ".join((r.heard_transcript or "") for r in responses).strip()
    ids = set(turn.responses)
    calls = sorted(
        (c for c in a.tools.values() if c.response_id in ids),
        key=lambda c: c.requested_ms if c.requested_ms is not None else 0,
    )
    return TurnSide(
        assistant=heard,
        words=len(heard.split()),
        spoken_s=round(sum(r.played_ms for r in responses) / 1000, 2),
        tools=[c.name for c in calls],
        interrupted=any(r.interrupted for r in responses),
    )


def _totals(a: Analysis) -> dict[str, float]:
    m = a.metrics
    assert m is not None
    return {
        "turns": len(a.turns),
        "words": a.words(heard=True),
        "spoken_s": round(m.assistant_talk_ms / 1000, 2),
        "tool_calls": len(a.tools),
        "interruptions": m.interruptions,
        "cost_usd": m.cost_usd,
    }


def compare(
    source: Analysis,
    rerun: Analysis,
    *,
    source_lint: list[dict[str, object]],
    rerun_lint: list[dict[str, object]],
) -> Comparison:
    turns = []
    for i in range(max(len(source.turns), len(rerun.turns))):
        user = source.turns[i].user_transcript if i < len(source.turns) else ""
        if not user and i < len(rerun.turns):
            user = rerun.turns[i].user_transcript
        turns.append(TurnComparison(i + 1, user, _side(source, i), _side(rerun, i)))
    return Comparison(
        source_id=source.session_id,
        rerun_id=rerun.session_id,
        turns=turns,
        source_lint=source_lint,
        rerun_lint=rerun_lint,
        totals={"source": _totals(source), "rerun": _totals(rerun)},
    )


async def rerun_session(
    store: EventStore,
    client: EarpieceClient,
    source_id: str,
    persona_yaml: str,
    *,
    tenant_id: str | None = None,
    quiet_s: float = QUIET_S,
) -> Comparison:
    source = await store.get_session(source_id)
    if source is None:
        raise LookupError(f"no session {source_id!r}")
    side = await recorded_user_side(store, source)
    rerun_id = await play_user_side(
        client, source, side, persona_yaml, tenant_id=tenant_id, quiet_s=quiet_s
    )
    for _ in range(50):  # the session's end is recorded by the workflow, just after EndSession
        record = await store.get_session(rerun_id)
        if record is not None and record.status == "ended":
            break
        await asyncio.sleep(0.1)
    before = analyse([e async for e in store.read_events(source_id)])
    after = analyse([e async for e in store.read_events(rerun_id)])
    source_request = source.config.get("request") or {}
    return compare(
        before,
        after,
        source_lint=lint_findings(source_request, side.tools),
        rerun_lint=lint_findings({"persona_yaml": persona_yaml}, side.tools),
    )


def render_comparison(c: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"re-run {c.rerun_id} of {c.source_id}", show_lines=True)
    table.add_column("turn", justify="right")
    table.add_column("user")
    table.add_column("source", overflow="fold")
    table.add_column("re-run", overflow="fold")

    def cell(side: TurnSide | None) -> str:
        if side is None:
            return "[dim](no turn)[/dim]"
        lines = [side.assistant or "[dim](silent)[/dim]"]
        lines.append(f"[dim]{side.words} words · {side.spoken_s:.1f} s spoken[/dim]")
        if side.tools:
            lines.append("[yellow]tools: " + " → ".join(side.tools) + "[/yellow]")
        if side.interrupted:
            lines.append("[red]✂ interrupted[/red]")
        return "\n".join(lines)

    for t in c.turns:
        table.add_row(str(t.turn), t.user, cell(t.source), cell(t.rerun))
    console.print(table)
    totals = Table(title="totals")
    totals.add_column("")
    totals.add_column("source", justify="right")
    totals.add_column("re-run", justify="right")
    for key in c.totals["source"]:
        totals.add_row(key, str(c.totals["source"][key]), str(c.totals["rerun"][key]))
    console.print(totals)
    for label, findings in (("source", c.source_lint), ("re-run", c.rerun_lint)):
        if not findings:
            console.print(f"[green]{label} persona: no lint findings[/green]")
        for f in findings:
            colour = "red" if f.get("severity") == "error" else "yellow"
            console.print(
                f"[{colour}]{label} persona: {f.get('severity')} {f.get('rule')}"
                f"[/{colour}] {f.get('message', '')}"
            )


async def run_rerun_command(settings: Settings, args: argparse.Namespace) -> int:
    """`earpiece rerun`: on the embedded defaults (or DATABASE_URL, TEMPORAL_ADDRESS) unless
    --address names a running gateway, which must share this database."""
    from services.runtime.app import infrastructure, serving_gateway
    from workflows.worker import session_worker

    persona_yaml = await asyncio.to_thread(Path(args.persona).read_text, encoding="utf-8")
    async with contextlib.AsyncExitStack() as stack:
        infra = await stack.enter_async_context(infrastructure(settings, temporal_port=None))
        address = args.address
        if not address:
            await stack.enter_async_context(session_worker(client=infra.client, store=infra.store))
            gw, _ = await stack.enter_async_context(serving_gateway(infra, address="127.0.0.1:0"))
            address = gw.address
        client = await stack.enter_async_context(EarpieceClient.connect(address))
        try:
            comparison = await rerun_session(
                infra.store, client, args.session_id, persona_yaml, tenant_id=args.tenant
            )
        except LookupError as exc:
            print(f"earpiece: {exc}")
            return 1
    if args.json:
        print(json.dumps(asdict(comparison), indent=2, default=str))
    else:
        render_comparison(comparison)
    return 0
