"""A prompt-regression re-run on real parts: the recorded user side is played into a new
session with another persona through gRPC, and the two are compared turn by turn."""

from __future__ import annotations

import json
from dataclasses import asdict

from services.gateway.server import RunningGateway
from services.replay.analysis import analyse
from services.replay.rerun import recorded_user_side, rerun_session
from services.runtime.config import PROJECT_ROOT, Settings
from services.store.event_store import EventStore
from tests.replay.conftest import Recorded, live_gateway

PERSONA = (PROJECT_ROOT / "examples" / "personas" / "screen_tutor.yaml").read_text()


async def test_user_side_keeps_timing(store: EventStore, recorded: Recorded) -> None:
    record = await store.get_session(recorded.session_id)
    assert record is not None
    side = await recorded_user_side(store, record)
    audio = [s for s in side.steps if s.kind == "audio"]
    assert sum(len(s.pcm) for s in audio) == sum(
        e.audio.length for e in recorded.events if e.kind == "client.audio" and e.audio
    )
    assert side.steps[0].kind == "screen"
    assert all(a.at_s <= b.at_s for a, b in zip(side.steps, side.steps[1:], strict=False))
    assert side.tools == ["highlight_element", "mark_step_complete"]
    assert side.reports_playback is False  # the recording client never reported


async def test_rerun_compares_turn_by_turn(
    gateway: RunningGateway, settings: Settings, store: EventStore, recorded: Recorded
) -> None:
    async with live_gateway(gateway, settings, "barge_in") as client:
        comparison = await rerun_session(store, client, recorded.session_id, PERSONA, quiet_s=1.0)
    assert comparison.source_id == recorded.session_id
    rerun = analyse([e async for e in store.read_events(comparison.rerun_id)])
    assert rerun.rerun_of == recorded.session_id
    assert rerun.persona  # the new persona's name
    assert len(comparison.turns) >= 2
    first = comparison.turns[0]
    assert first.source is not None and first.rerun is not None
    assert first.source.words > 0 and first.rerun.words > 0
    assert first.rerun.spoken_s > 0
    assert comparison.totals["rerun"]["turns"] >= 2
    assert isinstance(comparison.rerun_lint, list) and isinstance(comparison.source_lint, list)
    json.dumps(asdict(comparison))  # --json works
