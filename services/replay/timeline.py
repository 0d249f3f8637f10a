"""A session's timeline, rebuilt from its event log alone: turns, transcripts, context updates,
tool calls and latencies. What an analyst reads first when replaying a session."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.store.events import StoredEvent


@dataclass
class TimelineEntry:
    at_ms: int
    who: str
    what: str


@dataclass
class TurnMetrics:
    """Per user turn: how long Earpiece took to ask for a response after the user stopped, and
    how long until the first assistant audio arrived."""

    turn: int
    speech_stopped_ms: int
    response_requested_ms: int | None = None
    first_audio_ms: int | None = None

    @property
    def orchestration_ms(self) -> int | None:
        if self.response_requested_ms is None:
            return None
        return self.response_requested_ms - self.speech_stopped_ms

    @property
    def first_audio_latency_ms(self) -> int | None:
        if self.first_audio_ms is None:
            return None
        return self.first_audio_ms - self.speech_stopped_ms


@dataclass
class Timeline:
    entries: list[TimelineEntry] = field(default_factory=list)
    turns: list[TurnMetrics] = field(default_factory=list)
    event_count: int = 0
    input_audio_ms: int = 0
    output_audio_ms: int = 0

    def render(self) -> str:
        lines = [f"{'t (s)':>8}  {'who':<9} what"]
        lines += [f"{e.at_ms / 1000:8.2f}  {e.who:<9} {e.what}" for e in self.entries]
        lines.append("")
        lines.append(f"{'turn':>4}  {'stop→response.create':>21}  {'stop→first audio':>17}")
        for t in self.turns:
            orch = f"{t.orchestration_ms} ms" if t.orchestration_ms is not None else "-"
            first = (
                f"{t.first_audio_latency_ms} ms" if t.first_audio_latency_ms is not None else "-"
            )
            lines.append(f"{t.turn:>4}  {orch:>21}  {first:>17}")
        lines.append("")
        lines.append(
            f"{self.event_count} events; user audio {self.input_audio_ms / 1000:.1f} s, "
            f"assistant audio {self.output_audio_ms / 1000:.1f} s"
        )
        return "\n".join(lines)


def _ms(start: datetime, at: datetime) -> int:
    return int((at - start).total_seconds() * 1000)


async def build_timeline(events: AsyncIterable[StoredEvent]) -> Timeline:
    """Reads the events once, in seq order, keeping only what the timeline needs."""
    timeline = Timeline()
    start: datetime | None = None
    current: TurnMetrics | None = None
    first_audio_seen: set[str] = set()

    def add(at: datetime, who: str, what: str) -> None:
        assert start is not None
        timeline.entries.append(TimelineEntry(_ms(start, at), who, what))

    async for event in events:
        timeline.event_count += 1
        at = event.receive_time
        if start is None:
            start = at
        kind = event.kind
        if event.audio is not None:
            length_ms = event.audio.length // 48
            if event.audio.stream == "input":
                timeline.input_audio_ms += length_ms
            else:
                timeline.output_audio_ms += length_ms
        if kind in ("client.audio", "model.client.input_audio_buffer.append"):
            continue
        payload: Any = event.payload
        match kind:
            case "session.started":
                add(at, "earpiece", f"session started (prompt {payload['prompt_hash'][:12]})")
            case "client.screen_state":
                add(at, "client", f"screen state {json.dumps(payload['state'])}")
            case "model.server.input_audio_buffer.speech_started":
                add(at, "user", "starts speaking")
            case "model.server.input_audio_buffer.speech_stopped":
                current = TurnMetrics(len(timeline.turns) + 1, _ms(start, at))
                timeline.turns.append(current)
                add(at, "user", "stops speaking")
            case "model.server.conversation.item.input_audio_transcription.completed":
                add(at, "user", f'"{payload.get("transcript", "")}"')
            case "decision.context_injected":
                add(at, "earpiece", f"context update injected ({payload['item_id']})")
            case "decision.context_deleted":
                add(at, "earpiece", f"old context item deleted ({payload['item_id']})")
            case "decision.response_requested":
                if current is not None and current.response_requested_ms is None:
                    current.response_requested_ms = _ms(start, at)
                add(at, "earpiece", f"response.create ({payload['reason']})")
            case "decision.response_deferred":
                add(at, "earpiece", "response.create deferred: a response is active")
            case "model.server.response.output_audio.delta":
                response_id = payload.get("response_id", "")
                if response_id not in first_audio_seen:
                    first_audio_seen.add(response_id)
                    if current is not None and current.first_audio_ms is None:
                        current.first_audio_ms = _ms(start, at)
                    add(at, "assistant", "first audio")
            case "model.server.response.output_audio_transcript.done":
                add(at, "assistant", f'"{payload.get("transcript", "")}"')
            case "model.server.response.function_call_arguments.done":
                add(at, "assistant", f"calls {payload['name']}({payload['arguments']})")
            case "decision.playback_done":
                how = "estimated" if payload.get("estimated") else "reported by client"
                add(at, "client", f"playback finished ({how}, {payload['audio_ms']} ms)")
            case "decision.tool_output":
                add(at, "tool", f"{payload['name']} {payload['outcome']}: {payload['output']}")
            case "decision.tool_dropped":
                add(at, "tool", f"{payload['name']} dropped ({payload['reason']})")
            case "model.server.response.done":
                status = payload.get("response", {}).get("status", "")
                add(at, "assistant", f"response done ({status})")
            case "model.server.error":
                add(at, "model", f"error {payload.get('error', {}).get('code', '')}")
            case "model.link_lost":
                add(at, "earpiece", f"model link lost: {payload['reason']}")
            case "session.ended":
                add(at, "earpiece", f"session ended ({payload['reason']})")
            case _:
                pass
    return timeline
