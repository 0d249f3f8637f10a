"""The turn rules as one pure state machine: events in, commands out, time as an input.

Every millisecond rule of a live session lives here and nowhere else: playback progress and its
estimate, barge-in and truncation, the user's floor, context injection, response serialisation,
and which tool outcomes go into the model's conversation. The machine reads no clock and does no
I/O; `ModelPump` is the shell that feeds it events (with `now`, monotonic seconds) and carries out
the commands it returns, in order.

The machine decides, per response, *when speech is done* and *whether it was interrupted*, and
says so in one `Settle` command (the workflow's `settle` update) once the response has both
finished generating and finished playing (or was cut off). The workflow then decides only run
or drop for each call, from that decision and the tool registry; it owns every call until it has
one outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workflows.messages import ToolCall, ToolOutput, dropped_output

BYTES_PER_MS = 48  # PCM16 mono at 24 kHz
CONTEXT_PREFIX = "Context update:"


@dataclass(frozen=True, kw_only=True)
class TurnConfig:
    """The machine's bounds; all in seconds unless named otherwise."""

    # Once a client has reported playback for a response, its reports decide. The estimate is a
    # fallback only after no report at all for this long (a stalled speaker still reports).
    report_silence_s: float = 2.0
    # A client that has never reported: speech is done this long after the audio's duration.
    estimate_grace_s: float = 0.5
    # A `finished` report sent before generation ended counts when it covers the generated
    # audio within this many ms.
    finished_tolerance_ms: int = 150
    # `speech_stopped` with no commit (a false start): the user's floor is released after this.
    floor_release_s: float = 1.5


# ---- events in -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEvent:
    """A server event other than an audio delta, as decoded from the wire; `seq` is its place
    in the session's log."""

    type: str
    data: dict[str, Any]
    seq: int = 0


@dataclass(frozen=True)
class AudioDelivered:
    """An assistant audio delta, passed on to the client."""

    response_id: str
    item_id: str
    nbytes: int


@dataclass(frozen=True)
class PlaybackReport:
    response_id: str
    played_ms: int
    finished: bool


@dataclass(frozen=True)
class UserText:
    text: str


@dataclass(frozen=True)
class ScreenChanged:
    state: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class ToolOutcomes:
    """Outcomes the workflow decided (ran, failed or dropped), to record and close in the
    model's conversation. The same outcome may arrive again (an activity retried)."""

    outputs: tuple[ToolOutput, ...]


@dataclass(frozen=True)
class LinkUp:
    """A model link is ready, its conversation rebuilt from the log (empty for a first link).

    `closed_calls`: calls whose outputs that conversation already holds; `recorded_outcomes`:
    calls whose outcome the log already has (never recorded twice); `context_digest` and
    `context_item_id`: the screen state the rebuilt conversation already holds, if any."""

    closed_calls: frozenset[str] = frozenset()
    recorded_outcomes: frozenset[str] = frozenset()
    context_digest: str | None = None
    context_item_id: str | None = None


@dataclass(frozen=True)
class LinkDown:
    reason: str


@dataclass(frozen=True)
class Detached:
    """The client's stream ended: nothing more will be played. If the session itself is
    ending, calls still held get their one outcome here (dropped: the session ended), since
    no workflow decision is left to wait for."""

    reason: str
    session_ending: bool = False


@dataclass(frozen=True)
class Tick:
    """Time passed; the shell sends one at `next_deadline()`."""


Event = (
    ModelEvent
    | AudioDelivered
    | PlaybackReport
    | UserText
    | ScreenChanged
    | ToolOutcomes
    | LinkUp
    | LinkDown
    | Detached
    | Tick
)


# ---- commands out ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """Append a decision to the session's event log."""

    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class SendModel:
    """Send a client event to the model (validated and logged by the link, in wire order)."""

    event: dict[str, Any]


@dataclass(frozen=True)
class StopPlayback:
    response_id: str
    item_id: str


@dataclass(frozen=True)
class ToolStatus:
    call_id: str
    name: str
    state: str  # requested | held | running | succeeded | failed | dropped
    detail: str = ""


@dataclass(frozen=True)
class Settle:
    """A response's speech is done (or was cut off) and it asked for tools: the one message the
    workflow gets for it. Turn and response counts since the last one ride along."""

    response_id: str
    interrupted: bool
    decided_by: str
    calls: tuple[ToolCall, ...]
    turns: int = 0
    responses: int = 0


Command = Record | SendModel | StopPlayback | ToolStatus | Settle


# ---- state -----------------------------------------------------------------------------------


@dataclass
class Response:
    response_id: str
    item_ids: list[str] = field(default_factory=list)
    audio_bytes: int = 0
    first_delivered_at: float | None = None
    generated: bool = False
    status: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    last_report_at: float | None = None
    played_ms: int | None = None
    # played_ms of the latest `finished` report, if any.
    finished_ms: int | None = None
    # The client said it finished playing all of it (decides once the clock allows).
    finished_claimed: bool = False
    # Set once playback is decided: how ("reported", "estimated", "reports_stopped",
    # "no_audio", "interrupted", "detached"), and whether the user cut it off.
    decided_by: str | None = None
    interrupted: bool = False
    settled: bool = False

    def generated_ms(self) -> int:
        return self.audio_bytes // BYTES_PER_MS

    def playing(self) -> bool:
        return self.first_delivered_at is not None and self.decided_by is None

    def heard_ms(self, now: float) -> tuple[int, str]:
        """What the user heard so far, clamped to what was generated, and where that came from."""
        if self.played_ms is not None:
            heard, source = self.played_ms, "reported"
        elif self.first_delivered_at is None:
            heard, source = 0, "estimated"
        else:
            heard, source = int((now - self.first_delivered_at) * 1000), "estimated"
        return max(0, min(heard, self.generated_ms())), source


class TurnMachine:
    def __init__(self, *, config: TurnConfig | None = None, link_up: bool = False) -> None:
        self.config = config or TurnConfig()
        self.responses: dict[str, Response] = {}
        # The active response's id, "pending" between response.create and response.created.
        self.active: str | None = None
        # Why a response.create is waiting (for the active response, the user or the link).
        self.wanted: str | None = None
        self.user_floor = False
        self.floor_stopped_at: float | None = None
        self.link_up = link_up
        self.client_reports = False
        self._screen: dict[str, Any] | None = None
        self._screen_digest: str | None = None
        self._injected_digest: str | None = None
        self._context_item: str | None = None
        self._context_count = 0
        # Calls whose function_call_output the current link's conversation holds.
        self.closed_calls: set[str] = set()
        # Outcomes recorded in the log for this session, by call id (recorded once, ever).
        self.outcomes: dict[str, ToolOutput] = {}
        self.recorded: set[str] = set()
        # Calls of responses already settled (their responses have left the table).
        self.settled_calls: set[str] = set()
        # Turn and response counts not yet told to the workflow (folded into its next Settle).
        self.turns = 0
        self.responses_done = 0

    # ---- queries ----

    @property
    def assistant_playing(self) -> bool:
        """Whether the client is (or should be) playing assistant audio right now."""
        return any(r.playing() for r in self.responses.values())

    def next_deadline(self) -> float | None:
        """When the machine next needs a `Tick`, if ever."""
        deadlines = [d for r in self.responses.values() if (d := self._fallback_at(r)) is not None]
        if self.floor_stopped_at is not None and self.user_floor:
            deadlines.append(self.floor_stopped_at + self.config.floor_release_s)
        return min(deadlines) if deadlines else None

    def open_calls(self) -> list[ToolCall]:
        """Calls asked for whose response has not settled yet (held in this machine)."""
        return [c for r in self.responses.values() if not r.settled for c in r.calls]

    # ---- the one entry point ----

    def handle(self, event: Event, *, now: float) -> list[Command]:
        out: list[Command] = []
        match event:
            case AudioDelivered():
                self._on_audio(event, now)
            case ModelEvent():
                self._on_model(event, now, out)
            case PlaybackReport():
                self._on_playback(event, now, out)
            case UserText():
                out.append(SendModel(_user_text_item(event.text)))
                self._request("user_text", out)
            case ScreenChanged():
                self._screen, self._screen_digest = event.state, event.digest
            case ToolOutcomes():
                self._on_outcomes(event.outputs, out)
            case LinkUp():
                self._on_link_up(event, out)
            case LinkDown():
                self._on_link_down(event, now, out)
            case Detached():
                self._on_detached(event, now, out)
            case Tick():
                pass
        self._check_deadlines(now, out)
        return out

    def _on_detached(self, event: Detached, now: float, out: list[Command]) -> None:
        for r in list(self.responses.values()):
            if event.session_ending and not r.settled:
                r.settled = True
                drops = [dropped_output(c, reason="session_ended") for c in r.calls]
                self._on_outcomes(drops, out)
            if r.decided_by is None:
                r.generated = True
                self._decide(r, "detached", now, out)

    # ---- model events ----

    def _on_audio(self, event: AudioDelivered, now: float) -> None:
        r = self._response(event.response_id)
        r.audio_bytes += event.nbytes
        if r.first_delivered_at is None:
            r.first_delivered_at = now
        if event.item_id and event.item_id not in r.item_ids:
            r.item_ids.append(event.item_id)

    def _on_model(self, event: ModelEvent, now: float, out: list[Command]) -> None:
        data = event.data
        match event.type:
            case "input_audio_buffer.speech_started":
                self.user_floor, self.floor_stopped_at = True, None
                self._barge_in(now, out)
            case "input_audio_buffer.speech_stopped":
                self.floor_stopped_at = now
            case "input_audio_buffer.committed":
                self.user_floor, self.floor_stopped_at = False, None
                self.turns += 1
                self._request("turn_committed", out)
            case "input_audio_buffer.cleared" | "input_audio_buffer.timeout_triggered":
                self._release_floor(out)
            case "response.created":
                response_id = str(data.get("response", {}).get("id", ""))
                self.active = response_id
                self._response(response_id)
            case "response.output_item.added":
                item = data.get("item", {})
                if item.get("type") == "message":
                    r = self._response(str(data.get("response_id", "")))
                    r.item_ids.append(str(item.get("id", "")))
            case "response.function_call_arguments.done":
                r = self._response(str(data.get("response_id", "")))
                call = ToolCall(
                    call_id=str(data.get("call_id", "")),
                    name=str(data.get("name", "")),
                    arguments=str(data.get("arguments", "")),
                    response_id=r.response_id,
                    seq=event.seq,
                )
                r.calls.append(call)
                out.append(ToolStatus(call.call_id, call.name, "requested"))
            case "response.done":
                self._on_response_done(data, now, out)
            case "error":
                error = data.get("error") if isinstance(data.get("error"), dict) else {}
                if (error or {}).get("code") == "conversation_already_has_active_response":
                    # Never a failure: sent again after the active response's response.done.
                    self.wanted = self.wanted or "active_response_race"
            case _:
                pass

    def _on_response_done(self, data: dict[str, Any], now: float, out: list[Command]) -> None:
        response = data.get("response", {})
        r = self._response(str(response.get("id", "")))
        r.generated, r.status = True, str(response.get("status", ""))
        # Responses are serialised, so whatever was active has finished.
        self.active = None
        self.responses_done += 1
        for call in r.calls:
            out.append(
                Record(
                    "decision.tool_held",
                    {"call_id": call.call_id, "name": call.name, "response": r.response_id},
                )
            )
            out.append(ToolStatus(call.call_id, call.name, "held"))
        if r.decided_by is None:
            if r.status == "cancelled":
                # Cancelled without a barge-in seen here: nobody will hear the rest.
                self._decide(r, "interrupted", now, out, interrupted=True)
            elif r.audio_bytes == 0:
                self._decide(r, "no_audio", now, out)
            elif r.finished_ms is not None and self._covers(r, r.finished_ms):
                r.finished_claimed = True
        self._settle(r, out)
        if self.wanted is not None:
            self._request(self.wanted, out)

    def _barge_in(self, now: float, out: list[Command]) -> None:
        """The user talks over the assistant: playback stops now, and the assistant item is cut to
        what the user actually heard, so the model does not believe it said what nobody heard. A
        response is interrupted when this comes before its playback finished, whatever its
        generation status."""
        for r in list(self.responses.values()):
            unheard = not r.generated and r.first_delivered_at is None and bool(r.item_ids)
            if not (r.playing() or unheard):
                continue
            item_id = r.item_ids[-1] if r.item_ids else ""
            out.append(StopPlayback(r.response_id, item_id))
            audio_end_ms, source = r.heard_ms(now)
            heard = r.played_ms if r.played_ms is not None else audio_end_ms
            self._decide(r, "interrupted", now, out, interrupted=True)
            if not item_id or not self.link_up:
                continue
            if audio_end_ms == 0:
                # Truncating at 0 ms is rejected; the item goes instead.
                out.append(
                    Record(
                        "decision.item_deleted",
                        {"item_id": item_id, "reason": "barge_in_before_audio_heard"},
                    )
                )
                out.append(SendModel({"type": "conversation.item.delete", "item_id": item_id}))
            else:
                out.append(
                    Record(
                        "decision.truncated",
                        {
                            "item_id": item_id,
                            "audio_end_ms": audio_end_ms,
                            "heard_ms": heard,
                            "generated_ms": r.generated_ms(),
                            "heard_from": source,
                        },
                    )
                )
                out.append(
                    SendModel(
                        {
                            "type": "conversation.item.truncate",
                            "item_id": item_id,
                            "content_index": 0,
                            "audio_end_ms": audio_end_ms,
                        }
                    )
                )

    # ---- playback ----

    def _on_playback(self, event: PlaybackReport, now: float, out: list[Command]) -> None:
        self.client_reports = True
        r = self.responses.get(event.response_id)
        if r is None or r.decided_by is not None:
            return
        r.last_report_at = now
        r.played_ms = max(0, event.played_ms)
        if event.finished:
            r.finished_ms = r.played_ms
            # After generation ended, the client's word decides: its speaker drained. Before,
            # it may only be an underrun (audio generated slower than it plays), so it counts
            # at response.done only if it covered everything generated by then.
            if r.generated:
                r.finished_claimed = True

    def _covers(self, r: Response, played_ms: int) -> bool:
        return played_ms + self.config.finished_tolerance_ms >= r.generated_ms()

    def _fallback_at(self, r: Response) -> float | None:
        """When playback is decided for a response, if nothing else decides first. A client's
        `finished` decides, but never before the audio could have been played out (an
        over-reporting client is held to the clock). The estimate decides for a client that has
        not: never while reports keep coming, only once they stopped for `report_silence_s`."""
        if r.decided_by is not None or not r.generated or r.first_delivered_at is None:
            return None
        estimated_end = r.first_delivered_at + r.generated_ms() / 1000
        if r.finished_claimed:
            return estimated_end - self.config.finished_tolerance_ms / 1000
        if r.last_report_at is not None:
            return max(estimated_end, r.last_report_at + self.config.report_silence_s)
        if self.client_reports:
            # A reporting client that has not reported for this response yet.
            return max(estimated_end, r.first_delivered_at + self.config.report_silence_s)
        return estimated_end + self.config.estimate_grace_s

    def _check_deadlines(self, now: float, out: list[Command]) -> None:
        for r in list(self.responses.values()):
            at = self._fallback_at(r)
            if at is not None and now >= at:
                if r.finished_claimed:
                    how = "reported"
                elif r.last_report_at is not None:
                    how = "reports_stopped"
                else:
                    how = "estimated"
                self._decide(r, how, now, out)
                self._settle(r, out)
        if (
            self.user_floor
            and self.floor_stopped_at is not None
            and now >= self.floor_stopped_at + self.config.floor_release_s
        ):
            self._release_floor(out)

    def _decide(
        self,
        r: Response,
        how: str,
        now: float,
        out: list[Command],
        *,
        interrupted: bool = False,
    ) -> None:
        if r.decided_by is not None:
            return
        r.decided_by, r.interrupted = how, interrupted
        heard, _ = r.heard_ms(now)
        out.append(
            Record(
                "decision.playback_done",
                {
                    "response_id": r.response_id,
                    "decided_by": how,
                    "estimated": how in ("estimated", "reports_stopped"),
                    "interrupted": interrupted,
                    "audio_ms": r.generated_ms(),
                    "heard_ms": r.generated_ms() if how in ("reported", "estimated") else heard,
                },
            )
        )
        self._settle(r, out)

    def _settle(self, r: Response, out: list[Command]) -> None:
        """Once generated and decided: one Settle if the workflow has calls to decide. A settled
        response is done with: it leaves the table, so the per-frame work stays the size of
        what is in flight, not of the session."""
        if r.settled or not r.generated or r.decided_by is None:
            return
        r.settled = True
        self.responses.pop(r.response_id, None)
        self.settled_calls.update(c.call_id for c in r.calls)
        if r.calls:
            turns, responses = self.take_counts()
            out.append(
                Settle(r.response_id, r.interrupted, r.decided_by, tuple(r.calls), turns, responses)
            )

    def take_counts(self) -> tuple[int, int]:
        """Turns and responses not yet told to the workflow, which are then reset."""
        counts = (self.turns, self.responses_done)
        self.turns = self.responses_done = 0
        return counts

    def known_calls(self) -> set[str]:
        """Every call this machine has seen, settled or still held."""
        return self.settled_calls | {c.call_id for r in self.responses.values() for c in r.calls}

    # ---- responses ----

    def _release_floor(self, out: list[Command]) -> None:
        self.user_floor, self.floor_stopped_at = False, None
        if self.wanted is not None:
            self._request(self.wanted, out)

    def _request(self, reason: str, out: list[Command]) -> None:
        """Fresh screen context if it changed, then one response.create; it waits while a
        response is active, while the user holds the floor, and while there is no link."""
        if self.active is not None or self.user_floor or not self.link_up:
            if self.wanted is None:
                self.wanted = reason
                out.append(
                    Record(
                        "decision.response_deferred",
                        {
                            "reason": reason,
                            "waiting_for": "active_response"
                            if self.active is not None
                            else ("user_speaking" if self.user_floor else "model_link"),
                            "active_response": self.active,
                        },
                    )
                )
            return
        self.wanted = None
        self._inject_context(out)
        self.active = "pending"
        out.append(Record("decision.response_requested", {"reason": reason}))
        out.append(SendModel({"type": "response.create"}))

    def _inject_context(self, out: list[Command]) -> None:
        if self._screen is None or self._screen_digest == self._injected_digest:
            return
        old = self._context_item
        self._context_count += 1
        item_id = f"ctx_{self._context_count}_{self._screen_digest}"
        out.append(SendModel(context_item(self._screen, item_id=item_id)))
        self._context_item, self._injected_digest = item_id, self._screen_digest
        out.append(
            Record("decision.context_injected", {"item_id": item_id, "hash": self._screen_digest})
        )
        if old is not None:
            # Older screen states must not pile up in the model's context.
            out.append(SendModel({"type": "conversation.item.delete", "item_id": old}))
            out.append(Record("decision.context_deleted", {"item_id": old}))

    # ---- tool outcomes ----

    def _on_outcomes(self, outputs: Iterable[ToolOutput], out: list[Command]) -> None:
        follow_up = False
        for o in outputs:
            if o.call_id not in self.recorded:
                self.recorded.add(o.call_id)
                self.outcomes[o.call_id] = o
                out.append(Record(*outcome_record(o)))
                out.append(ToolStatus(o.call_id, o.name, o.outcome, o.output[:500]))
            if self.link_up and o.call_id not in self.closed_calls:
                self.closed_calls.add(o.call_id)
                out.append(SendModel(function_output_item(o)))
                follow_up = follow_up or o.outcome != "dropped"
        if follow_up:
            # One response.create for the batch; a dropped call needs none (the user's own
            # committed turn gets the next response, and it sees the closure).
            self._request("tool_outputs", out)

    # ---- the link ----

    def _on_link_up(self, event: LinkUp, out: list[Command]) -> None:
        self.link_up = True
        self.active = None
        self.closed_calls = set(event.closed_calls)
        self.recorded |= event.recorded_outcomes
        self._injected_digest, self._context_item = event.context_digest, event.context_item_id
        pending = [o for cid, o in self.outcomes.items() if cid not in self.closed_calls]
        if pending:
            self._on_outcomes(pending, out)
        elif self.wanted is not None:
            self._request(self.wanted, out)

    def _on_link_down(self, event: LinkDown, now: float, out: list[Command]) -> None:
        """The model is gone; the client may still be playing what it has. Generation ends here,
        and playback is decided as usual."""
        self.link_up = False
        if self.active == "pending":
            # The create never became a response: ask again on the next link. A response cut
            # off mid-answer is not resumed; the user heard what they heard and speaks next.
            self.wanted = self.wanted or "link_restored"
        self.active = None
        for r in self.responses.values():
            if not r.generated:
                r.generated, r.status = True, "link_lost"
                if r.audio_bytes == 0 and r.decided_by is None:
                    self._decide(r, "no_audio", now, out)
                self._settle(r, out)
        self.closed_calls = set()

    def _response(self, response_id: str) -> Response:
        r = self.responses.get(response_id)
        if r is None:
            r = self.responses[response_id] = Response(response_id)
        return r


# ---- what goes into the model's conversation; one place, shared with the rebuild ----


def function_output_item(output: ToolOutput) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "function_call_output",
            "call_id": output.call_id,
            "output": output.output,
        },
    }


def outcome_record(output: ToolOutput) -> tuple[str, dict[str, Any]]:
    if output.outcome == "dropped":
        return "decision.tool_dropped", {
            "call_id": output.call_id,
            "name": output.name,
            "reason": output.reason or "interrupted",
            "output": output.output,
        }
    return "decision.tool_output", {
        "call_id": output.call_id,
        "name": output.name,
        "outcome": output.outcome,
        "output": output.output,
        "started_at": output.started_at,
    }


def context_item(screen: dict[str, Any], *, item_id: str) -> dict[str, Any]:
    text = f"{CONTEXT_PREFIX} {json.dumps(screen, sort_keys=True)}"
    return _user_text_item(text, item_id=item_id)


def _user_text_item(text: str, *, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if item_id is not None:
        item["id"] = item_id
    return {"type": "conversation.item.create", "item": item}
