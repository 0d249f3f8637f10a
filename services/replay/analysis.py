"""A session rebuilt from its event log alone: turns, transcripts as heard, interruptions, tool
calls, context injections, link losses and rebuilds, errors, and the metrics over them.

Pure: events in, an `Analysis` out, no I/O. `Analyzer.feed` takes events one at a time in seq
order (so a long session streams through it page by page) and `finish` returns the result.
Unknown kinds are ignored; any `decision.*` event with a `call_id` is attached to its tool
call, and any `*.link_*` event is a link event, so kinds added later still show up.

All times are milliseconds since the session's first event (its receive time). Audio events are
handled without decoding their payload: their stream, length and receive time are enough, and
responses are serialised, so an assistant audio delta belongs to the active response.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.replay.prices import PriceTable
from services.store.events import StoredEvent

BYTES_PER_MS = 48  # 24 kHz mono PCM16

# Many per second and needed only for their audio reference (or not at all): never decoded.
_BULK_KINDS = frozenset(
    {
        "client.audio",
        "model.client.input_audio_buffer.append",
        "model.server.response.output_audio.delta",
        "model.server.response.function_call_arguments.delta",
        "model.server.conversation.item.input_audio_transcription.delta",
        "model.server.rate_limits.updated",
    }
)


@dataclass
class AssistantResponse:
    response_id: str
    turn: int  # 0 when it answers no user turn (e.g. the session's greeting)
    created_ms: int
    requested_ms: int | None = None  # response.create sent to the model
    reason: str = ""  # why it was requested (turn_committed, tool_outputs, ...)
    item_id: str = ""
    first_audio_ms: int | None = None  # first audio forwarded to the client
    audio_bytes: int = 0
    transcript: str = ""  # everything the model generated
    heard_transcript: str | None = None  # cut at barge-in; None until finished
    done_ms: int | None = None
    status: str = ""
    playback_done_ms: int | None = None
    playback_estimated: bool | None = None
    interrupted: bool = False
    heard_ms: int | None = None  # audio_end_ms of the truncation (0 when the item was deleted)
    usage: dict[str, Any] = field(default_factory=dict)
    cost_usd: float = 0.0

    @property
    def generated_ms(self) -> int:
        return self.audio_bytes // BYTES_PER_MS

    @property
    def played_ms(self) -> int:
        """Audio the user heard: all of it, or up to the cut."""
        if self.heard_ms is not None:
            return min(self.heard_ms, self.generated_ms)
        return self.generated_ms


@dataclass
class ToolCall:
    call_id: str
    name: str
    arguments: str = ""
    response_id: str = ""
    requested_ms: int | None = None  # the model finished the call's arguments
    held_ms: int | None = None  # Earpiece held it until speech was done
    speech_done_ms: int | None = None  # its response's playback finished
    started_ms: int | None = None  # the tool activity started
    finished_ms: int | None = None  # its one outcome was recorded
    outcome: str = ""  # succeeded, failed, dropped (or empty: never closed)
    output: str = ""
    decisions: list[str] = field(default_factory=list)  # every decision.* kind seen for it

    @property
    def speech_done_to_start_ms(self) -> int | None:
        if self.speech_done_ms is None or self.started_ms is None:
            return None
        return self.started_ms - self.speech_done_ms

    @property
    def duration_ms(self) -> int | None:
        if self.started_ms is None or self.finished_ms is None:
            return None
        return self.finished_ms - self.started_ms


@dataclass
class Turn:
    """A user turn: from speech start to the next one, with the responses that answered it."""

    index: int
    speech_started_ms: int
    speech_stopped_ms: int | None = None
    committed_ms: int | None = None
    item_id: str = ""
    user_transcript: str = ""
    responses: list[str] = field(default_factory=list)  # response ids
    barged_in: bool = False  # this turn's speech interrupted the assistant


@dataclass
class Interruption:
    at_ms: int
    response_id: str
    item_id: str
    audio_end_ms: int  # what the user heard (0: the item was deleted)
    generated_ms: int | None
    heard_from: str  # reported or estimated


@dataclass
class ContextInjection:
    at_ms: int
    item_id: str
    hash: str
    state: dict[str, Any] | None = None  # the screen state it carried
    deleted_ms: int | None = None


@dataclass
class LinkEvent:
    at_ms: int
    kind: str  # the event kind, e.g. model.link_lost, model.link_rebuilt
    reason: str


@dataclass
class ErrorEvent:
    at_ms: int
    kind: str  # model.server.error, gateway.message_rejected, ...
    code: str
    message: str
    severity: str = ""


@dataclass
class Segment:
    start_ms: int
    end_ms: int
    label: str = ""


@dataclass
class Entry:
    """One readable line of the timeline."""

    at_ms: int
    who: str  # user, assistant, earpiece, client, tool, model
    what: str
    kind: str


@dataclass
class TurnMetrics:
    turn: int
    user_speech_end_ms: int | None
    first_audio_latency_ms: int | None  # user speech end → first assistant audio at the client
    earpiece_ms: int | None  # the part of it Earpiece added (turn committed → response.create)
    model_ms: int | None  # the rest: the model's
    interrupted: bool
    user_talk_ms: int
    assistant_talk_ms: int
    tool_calls: int


@dataclass
class SessionMetrics:
    turns: list[TurnMetrics]
    first_audio_latency_p50_ms: int | None
    first_audio_latency_max_ms: int | None
    earpiece_p50_ms: int | None
    speech_done_to_tool_start_ms: list[int]
    tool_durations_ms: list[int]
    interruptions: int
    user_talk_ms: int
    assistant_talk_ms: int
    usage: dict[str, int]
    cost_usd: float


@dataclass
class Analysis:
    session_id: str = ""
    started_at: datetime | None = None
    duration_ms: int = 0
    event_count: int = 0
    prompt_hash: str = ""
    persona: str = ""
    tenant_id: str = ""
    rerun_of: str = ""
    turns: list[Turn] = field(default_factory=list)
    responses: dict[str, AssistantResponse] = field(default_factory=dict)
    tools: dict[str, ToolCall] = field(default_factory=dict)
    interruptions: list[Interruption] = field(default_factory=list)
    contexts: list[ContextInjection] = field(default_factory=list)
    links: list[LinkEvent] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)
    user_speech: list[Segment] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    input_audio_ms: int = 0
    output_audio_ms: int = 0
    ended_reason: str = ""
    metrics: SessionMetrics | None = None

    @property
    def assistant_speech(self) -> list[Segment]:
        """What the client played, on the wall clock: from the first frame, for as long as was
        heard (cut at barge-in)."""
        out = []
        for r in self.responses.values():
            if r.first_audio_ms is None or r.played_ms <= 0:
                continue
            out.append(Segment(r.first_audio_ms, r.first_audio_ms + r.played_ms, r.response_id))
        return out

    def words(self, heard: bool = True) -> int:
        total = 0
        for r in self.responses.values():
            text = r.heard_transcript if heard and r.heard_transcript is not None else r.transcript
            total += len(text.split())
        return total


def heard_text(transcript: str, heard_ms: int, generated_ms: int) -> str:
    """The part of a transcript the user heard, cut in proportion to the audio played (the
    Realtime API gives no word timings), at a word boundary."""
    if generated_ms <= 0 or heard_ms >= generated_ms:
        return transcript
    if heard_ms <= 0:
        return ""
    words = transcript.split()
    keep = round(len(words) * heard_ms / generated_ms)
    return " ".join(words[:keep])


_MS = timedelta(milliseconds=1)


def _ms(start: datetime, at: datetime) -> int:
    return (at - start) // _MS


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


class Analyzer:
    """Feeds on one session's events in seq order; `finish()` gives the `Analysis`."""

    def __init__(self, prices: PriceTable | None = None) -> None:
        self.a = Analysis()
        self.prices = prices or PriceTable.default()
        self._start: datetime | None = None
        self._turn: Turn | None = None
        self._active: AssistantResponse | None = None
        self._pending_request: tuple[int, str] | None = None
        self._speech_start: int | None = None
        self._screens: dict[str, dict[str, Any]] = {}
        self._item_response: dict[str, str] = {}
        self._last_ms = 0

    # -- helpers -----------------------------------------------------------------------------

    def _add(self, at: int, who: str, what: str, kind: str) -> None:
        self.a.entries.append(Entry(at, who, what, kind))

    def _call(self, call_id: str, name: str = "") -> ToolCall:
        call = self.a.tools.get(call_id)
        if call is None:
            call = self.a.tools[call_id] = ToolCall(call_id=call_id, name=name)
        elif name and not call.name:
            call.name = name
        return call

    def _response(self, response_id: str, at: int) -> AssistantResponse:
        r = self.a.responses.get(response_id)
        if r is None:
            turn = self._turn.index if self._turn is not None else 0
            r = self.a.responses[response_id] = AssistantResponse(response_id, turn, at)
            if self._turn is not None:
                self._turn.responses.append(response_id)
        return r

    # -- feeding -----------------------------------------------------------------------------

    def feed(self, event: StoredEvent) -> None:
        ref = event.audio
        self.feed_row(
            event.session_id,
            event.kind,
            event.receive_time,
            None if ref is None else ref.stream,
            0 if ref is None else ref.length,
            event.payload_json,
        )

    def feed_row(
        self,
        session_id: str,
        kind: str,
        receive_time: datetime,
        stream: str | None,
        length: int,
        payload_json: str,
    ) -> None:
        """`feed` on a row's columns, for readers that skip building a `StoredEvent`."""
        a = self.a
        a.event_count += 1
        if self._start is None:
            self._start = receive_time
            a.started_at = receive_time
            a.session_id = session_id
        at = (receive_time - self._start) // _MS
        self._last_ms = at
        if kind in _BULK_KINDS:
            if stream == "input":
                a.input_audio_ms += length // BYTES_PER_MS
            elif stream is not None and kind == "model.server.response.output_audio.delta":
                a.output_audio_ms += length // BYTES_PER_MS
                active = self._active
                if active is not None:
                    if active.first_audio_ms is None:
                        active.first_audio_ms = at
                        self._add(at, "assistant", "first audio", kind)
                    active.audio_bytes += length
            return
        payload: Any = json.loads(payload_json)
        if not isinstance(payload, dict):
            return
        self._handle(kind, payload, at)

    def _handle(self, kind: str, p: dict[str, Any], at: int) -> None:
        a = self.a
        match kind:
            case "session.started":
                a.tenant_id = str(p.get("tenant_id", ""))
                a.prompt_hash = str(p.get("prompt_hash", "") or "")
                a.persona = str(p.get("persona", "") or "")
                config = p.get("config") if isinstance(p.get("config"), dict) else {}
                request = (config or {}).get("request") or {}
                a.rerun_of = str(
                    p.get("rerun_of")
                    or (config or {}).get("rerun_of")
                    or (request.get("rerun_of") if isinstance(request, dict) else "")
                    or ""
                )
                what = f"session started (prompt {a.prompt_hash[:12]})"
                if a.rerun_of:
                    what += f", re-run of {a.rerun_of}"
                self._add(at, "earpiece", what, kind)
            case "client.screen_state":
                state = p.get("state")
                if isinstance(state, dict):
                    self._screens[str(p.get("hash", ""))] = state
                self._add(at, "client", f"screen {_short(state)}", kind)
            case "model.server.input_audio_buffer.speech_started":
                self._speech_start = at
                self._turn = Turn(index=len(a.turns) + 1, speech_started_ms=at)
                self._turn.item_id = str(p.get("item_id", ""))
                a.turns.append(self._turn)
                self._add(at, "user", "starts speaking", kind)
            case "model.server.input_audio_buffer.speech_stopped":
                if self._turn is not None:
                    self._turn.speech_stopped_ms = at
                start = self._speech_start if self._speech_start is not None else at
                a.user_speech.append(Segment(start, at, str(p.get("item_id", ""))))
                self._speech_start = None
                self._add(at, "user", "stops speaking", kind)
            case "model.server.input_audio_buffer.committed":
                if self._turn is not None and self._turn.committed_ms is None:
                    self._turn.committed_ms = at
            case "model.server.conversation.item.input_audio_transcription.completed":
                text = str(p.get("transcript", ""))
                item_id = str(p.get("item_id", ""))
                turn = next((t for t in reversed(a.turns) if t.item_id == item_id), self._turn)
                if turn is not None:
                    turn.user_transcript = text
                self._add(at, "user", f'"{text}"', kind)
            case "decision.context_injected":
                digest = str(p.get("hash", ""))
                item_id = str(p.get("item_id", ""))
                a.contexts.append(ContextInjection(at, item_id, digest, self._screens.get(digest)))
                self._add(at, "earpiece", f"context update injected ({item_id})", kind)
            case "decision.context_deleted":
                item_id = str(p.get("item_id", ""))
                for c in a.contexts:
                    if c.item_id == item_id and c.deleted_ms is None:
                        c.deleted_ms = at
                self._add(at, "earpiece", f"old context item deleted ({item_id})", kind)
            case "decision.response_requested":
                self._pending_request = (at, str(p.get("reason", "")))
                self._add(at, "earpiece", f"response.create ({p.get('reason', '')})", kind)
            case "model.client.response.create":
                if self._pending_request is not None:
                    self._pending_request = (at, self._pending_request[1])
                else:
                    self._pending_request = (at, "")
            case "decision.response_deferred":
                self._add(at, "earpiece", "response.create deferred: a response is active", kind)
            case "model.server.response.created":
                response = p.get("response") or {}
                r = self._response(str(response.get("id", "")), at)
                if self._pending_request is not None:
                    r.requested_ms, r.reason = self._pending_request
                    self._pending_request = None
                self._active = r
            case "model.server.response.output_item.added":
                item = p.get("item") or {}
                response_id = str(p.get("response_id", ""))
                if item.get("type") == "message":
                    r = self._response(response_id, at)
                    r.item_id = str(item.get("id", ""))
                    self._item_response[r.item_id] = response_id
            case "model.server.response.output_audio_transcript.delta":
                # Kept in case the response ends without its `.done` (cancelled mid-way).
                r = self._response(str(p.get("response_id", "")), at)
                r.transcript += str(p.get("delta", ""))
            case "model.server.response.output_audio_transcript.done":
                r = self._response(str(p.get("response_id", "")), at)
                r.transcript = str(p.get("transcript", ""))
                self._add(at, "assistant", f'"{r.transcript}"', kind)
            case "model.server.response.function_call_arguments.done":
                call = self._call(str(p.get("call_id", "")), str(p.get("name", "")))
                call.arguments = str(p.get("arguments", ""))
                call.response_id = str(p.get("response_id", ""))
                call.requested_ms = at
                self._add(at, "assistant", f"calls {call.name}({_short(call.arguments)})", kind)
            case "model.server.response.done":
                response = p.get("response") or {}
                r = self._response(str(response.get("id", "")), at)
                r.done_ms, r.status = at, str(response.get("status", ""))
                usage = response.get("usage")
                if isinstance(usage, dict):
                    r.usage = usage
                    r.cost_usd = self.prices.cost(usage)
                if self._active is r:
                    self._active = None
                self._add(at, "assistant", f"response done ({r.status})", kind)
            case "decision.truncated" | "decision.item_deleted":
                item_id = str(p.get("item_id", ""))
                response_id = self._item_response.get(item_id, "")
                end = int(p.get("audio_end_ms", 0)) if kind == "decision.truncated" else 0
                cut = a.responses.get(response_id)
                if cut is not None:
                    cut.interrupted, cut.heard_ms = True, end
                generated = p.get("generated_ms")
                a.interruptions.append(
                    Interruption(
                        at,
                        response_id,
                        item_id,
                        end,
                        int(generated) if generated is not None else None,
                        str(p.get("heard_from", "")),
                    )
                )
                if self._turn is not None:
                    self._turn.barged_in = True
                what = (
                    f"barge-in: cut to {end} ms heard"
                    if kind == "decision.truncated"
                    else "barge-in before any audio was heard: item deleted"
                )
                self._add(at, "earpiece", what, kind)
            case "decision.playback_done":
                r = self._response(str(p.get("response_id", "")), at)
                r.playback_done_ms = at
                r.playback_estimated = bool(p.get("estimated"))
                if p.get("interrupted"):
                    r.interrupted = True
                for call in a.tools.values():
                    if call.response_id == r.response_id and call.speech_done_ms is None:
                        call.speech_done_ms = at
                how = "estimated" if r.playback_estimated else "reported by client"
                self._add(at, "client", f"playback finished ({how}, {p.get('audio_ms')} ms)", kind)
            case "model.server.error" | "gateway.message_rejected" | "model.link_failed":
                if kind == "model.server.error":
                    error = p.get("error") or {}
                    code, message = str(error.get("code", "")), str(error.get("message", ""))
                elif kind == "gateway.message_rejected":
                    code, message = str(p.get("field", "")), str(p.get("problem", ""))
                else:
                    code, message = "link_failed", str(p.get("reason", ""))
                    a.links.append(LinkEvent(at, kind, message))
                a.errors.append(ErrorEvent(at, kind, code, message))
                self._add(at, "model" if kind.startswith("model") else "earpiece",
                          f"error {code}: {_short(message)}", kind)  # fmt: skip
            case "decision.model_error_classified":
                for e in reversed(a.errors):
                    if e.kind == "model.server.error" and e.code == str(p.get("code", "")):
                        e.severity = str(p.get("severity", ""))
                        break
            case "session.ended":
                a.ended_reason = str(p.get("reason", ""))
                self._add(at, "earpiece", f"session ended ({a.ended_reason})", kind)
            case _:
                self._generic(kind, p, at)

    def _generic(self, kind: str, p: dict[str, Any], at: int) -> None:
        a = self.a
        call_id = p.get("call_id")
        if kind.startswith("decision.") and isinstance(call_id, str) and call_id:
            call = self._call(call_id, str(p.get("name", "")))
            call.decisions.append(kind)
            short = kind.removeprefix("decision.")
            if short == "tool_held":
                call.held_ms = at
                call.response_id = call.response_id or str(p.get("response", ""))
                self._add(at, "earpiece", f"{call.name} held until speech is done", kind)
            elif short in ("tool_started", "tool_scheduled", "tool_running"):
                call.started_ms = call.started_ms if call.started_ms is not None else at
                self._add(at, "tool", f"{call.name} started", kind)
            elif short == "tool_output":
                call.finished_ms = at
                call.outcome = str(p.get("outcome", ""))
                call.output = str(p.get("output", ""))
                started = _parse_time(str(p.get("started_at", "")))
                if started is not None and self._start is not None and call.started_ms is None:
                    call.started_ms = min(_ms(self._start, started), at)
                self._add(at, "tool", f"{call.name} {call.outcome}: {_short(call.output)}", kind)
            elif short == "tool_dropped":
                call.finished_ms = at
                call.outcome = "dropped"
                call.output = str(p.get("reason", ""))
                self._add(at, "tool", f"{call.name} dropped ({call.output})", kind)
            else:
                self._add(at, "earpiece", f"{call.name}: {short}", kind)
            return
        if ".link_" in kind or kind in ("gateway.lost", "model.rebuilt"):
            reason = str(p.get("reason", "") or p.get("cause", "") or "")
            a.links.append(LinkEvent(at, kind, reason))
            self._add(at, "earpiece", f"{kind}: {reason}" if reason else kind, kind)
        elif kind.endswith(".error") or kind.endswith("_error"):
            a.errors.append(ErrorEvent(at, kind, str(p.get("code", "")), _short(p)))
            self._add(at, "earpiece", f"error ({kind})", kind)
        elif kind == "client.detached":
            self._add(at, "client", "detached", kind)
        elif kind == "client.attach" and a.entries:
            self._add(at, "client", "attached", kind)

    def finish(self) -> Analysis:
        a = self.a
        a.duration_ms = self._last_ms
        if self._speech_start is not None:
            a.user_speech.append(Segment(self._speech_start, self._last_ms, "unfinished"))
        for r in a.responses.values():
            r.heard_transcript = (
                heard_text(r.transcript, r.played_ms, r.generated_ms)
                if r.heard_ms is not None
                else r.transcript
            )
        a.metrics = compute_metrics(a)
        return a


def analyse(events: Iterable[StoredEvent], prices: PriceTable | None = None) -> Analysis:
    analyzer = Analyzer(prices)
    for event in events:
        analyzer.feed(event)
    return analyzer.finish()


def _median(values: list[int]) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _overlap(segments: list[Segment], start: int, end: int) -> int:
    return sum(max(0, min(s.end_ms, end) - max(s.start_ms, start)) for s in segments)


def compute_metrics(a: Analysis) -> SessionMetrics:
    turns: list[TurnMetrics] = []
    assistant = a.assistant_speech
    bounds = [t.speech_started_ms for t in a.turns[1:]] + [a.duration_ms + 1] if a.turns else []
    for turn, next_start in zip(a.turns, bounds, strict=True):
        responses = [a.responses[rid] for rid in turn.responses if rid in a.responses]
        first = next((r for r in responses if r.first_audio_ms is not None), None)
        end = turn.speech_stopped_ms
        latency = earpiece = model = None
        if first is not None and first.first_audio_ms is not None and end is not None:
            latency = first.first_audio_ms - end
            if first.requested_ms is not None:
                committed = turn.committed_ms if turn.committed_ms is not None else end
                earpiece = max(0, first.requested_ms - max(committed, end))
                model = latency - earpiece
        user_talk = _overlap(a.user_speech, turn.speech_started_ms, next_start)
        assistant_talk = _overlap(assistant, turn.speech_started_ms, next_start)
        ids = set(turn.responses)
        turns.append(
            TurnMetrics(
                turn=turn.index,
                user_speech_end_ms=end,
                first_audio_latency_ms=latency,
                earpiece_ms=earpiece,
                model_ms=model,
                interrupted=any(r.interrupted for r in responses),
                user_talk_ms=user_talk,
                assistant_talk_ms=assistant_talk,
                tool_calls=sum(1 for c in a.tools.values() if c.response_id in ids),
            )
        )
    latencies = [t.first_audio_latency_ms for t in turns if t.first_audio_latency_ms is not None]
    earpiece_parts = [t.earpiece_ms for t in turns if t.earpiece_ms is not None]
    usage: dict[str, int] = {}
    for r in a.responses.values():
        _sum_usage(usage, r.usage)
    return SessionMetrics(
        turns=turns,
        first_audio_latency_p50_ms=_median(latencies),
        first_audio_latency_max_ms=max(latencies) if latencies else None,
        earpiece_p50_ms=_median(earpiece_parts),
        speech_done_to_tool_start_ms=[
            v for c in a.tools.values() if (v := c.speech_done_to_start_ms) is not None
        ],
        tool_durations_ms=[v for c in a.tools.values() if (v := c.duration_ms) is not None],
        interruptions=len(a.interruptions),
        user_talk_ms=sum(s.end_ms - s.start_ms for s in a.user_speech),
        assistant_talk_ms=sum(s.end_ms - s.start_ms for s in assistant),
        usage=usage,
        cost_usd=round(sum(r.cost_usd for r in a.responses.values()), 6),
    )


def _sum_usage(into: dict[str, int], usage: dict[str, Any], prefix: str = "") -> None:
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            into[prefix + key] = into.get(prefix + key, 0) + int(value)
        elif isinstance(value, dict):
            _sum_usage(into, value, f"{prefix}{key.removesuffix('_details')}.")
