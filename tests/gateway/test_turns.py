"""The turn state machine, table-driven: events at given times in, commands out.

Each case is a script of (time, event) steps. Between steps the machine is ticked every 50 ms,
as the shell would at `next_deadline()`, so a case reads like a timeline of one session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from services.gateway.turns import (
    AudioDelivered,
    Command,
    Detached,
    Event,
    LinkDown,
    LinkUp,
    ModelEvent,
    PlaybackReport,
    Record,
    ScreenChanged,
    SendModel,
    Settle,
    StopPlayback,
    Tick,
    ToolOutcomes,
    TurnConfig,
    TurnMachine,
    UserText,
)
from workflows.messages import ToolCall, ToolOutput, dropped_output

Step = tuple[float, Event]


@dataclass
class Run:
    commands: list[tuple[float, Command]]
    machine: TurnMachine

    def at(self, kind: type) -> list[tuple[float, Any]]:
        return [(t, c) for t, c in self.commands if isinstance(c, kind)]

    def records(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, c.payload) for t, c in self.at(Record) if c.kind == kind]

    def sent(self, event_type: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, c.event) for t, c in self.at(SendModel) if c.event["type"] == event_type]

    def settled(self) -> list[tuple[float, Settle]]:
        return self.at(Settle)


def run(steps: list[Step], *, until: float | None = None, link_up: bool = True) -> Run:
    machine = TurnMachine(config=TurnConfig(), link_up=link_up)
    end = until if until is not None else (steps[-1][0] + 10.0 if steps else 0.0)
    ticks: list[Step] = [(k * 0.05, Tick()) for k in range(int(end / 0.05) + 1)]
    # Stable sort: events keep their script order, and a tick at the same time comes after.
    timeline = sorted([*steps, *ticks], key=lambda s: (s[0], isinstance(s[1], Tick)))
    out: list[tuple[float, Command]] = []
    for now, event in timeline:
        out += [(now, c) for c in machine.handle(event, now=now)]
    return Run(out, machine)


# ---- building blocks of a script ----


def ev(kind: str, **data: Any) -> ModelEvent:
    return ModelEvent(kind, data)


def created(rid: str = "r1") -> ModelEvent:
    return ev("response.created", response={"id": rid})


def message_item(rid: str = "r1", item: str = "i1") -> ModelEvent:
    return ev("response.output_item.added", response_id=rid, item={"type": "message", "id": item})


def call(rid: str = "r1", call_id: str = "c1", name: str = "check_answer") -> ModelEvent:
    return ev(
        "response.function_call_arguments.done",
        response_id=rid,
        call_id=call_id,
        name=name,
        arguments="{}",
    )


def done(rid: str = "r1", status: str = "completed") -> ModelEvent:
    return ev("response.done", response={"id": rid, "status": status})


def audio(start: float, seconds: float, *, speed: float, rid: str = "r1") -> list[Step]:
    """`seconds` of assistant audio generated at `speed` times real time, in 100 ms deltas."""
    steps: list[Step] = []
    for k in range(round(seconds * 10)):
        steps.append((start + k * 0.1 / speed, AudioDelivered(rid, "i1", 4800)))
    return steps


def answer(
    *, seconds: float = 3.0, speed: float = 1.0, calls: int = 1, rid: str = "r1"
) -> tuple[list[Step], float]:
    """A response that speaks `seconds` of audio then asks for `calls` calls; returns the steps
    and when generation finished."""
    steps: list[Step] = [(0.0, created(rid)), (0.0, message_item(rid))]
    steps += audio(0.01, seconds, speed=speed, rid=rid)
    gen_end = 0.01 + seconds / speed
    steps += [(gen_end, call(rid, f"c{k + 1}")) for k in range(calls)]
    steps.append((gen_end + 0.01, done(rid)))
    return steps, gen_end + 0.01


def reports(start: float, end: float, *, played: Any, every: float = 0.2) -> list[Step]:
    out: list[Step] = []
    t = start
    while t <= end + 1e-9:
        out.append((round(t, 3), PlaybackReport("r1", int(played(t)), False)))
        t += every
    return out


# ---- playback: who decides that speech is done ----


@pytest.mark.parametrize("speed", [0.6, 1.0, 4.0])
def test_reporting_client_that_stalls_decides_by_its_reports(speed: float) -> None:
    # 3 s of audio; the speaker plays 1 s, underruns for 5 s while still reporting, then plays
    # the rest and reports finished at ~8 s. The estimate would have fired at ~3 s.
    steps, _ = answer(seconds=3.0, speed=speed)

    def played(t: float) -> float:
        return min(1000, t * 1000) if t < 6 else min(3000, 1000 + (t - 6) * 1000)

    steps += reports(0.2, 7.8, played=played)
    steps.append((8.0, PlaybackReport("r1", 3000, True)))
    r = run(steps, until=12)
    [(t, signal)] = r.settled()
    assert t == pytest.approx(8.0)
    assert signal.decided_by == "reported"
    assert signal.interrupted is False


def test_reports_that_stop_altogether_fall_back_to_the_estimate() -> None:
    steps, _ = answer(seconds=3.0, speed=4.0)
    steps += reports(0.2, 1.0, played=lambda t: t * 1000)
    r = run(steps, until=10)
    [(t, signal)] = r.settled()
    # Not before the audio's end (3 s), and not before reports were silent for 2 s.
    assert t == pytest.approx(3.05, abs=0.06)
    assert signal.decided_by == "reports_stopped"
    [(_, record)] = r.records("decision.playback_done")
    assert record["estimated"] is True


def test_client_that_never_reports_is_estimated_after_the_audio_and_a_grace() -> None:
    steps, _ = answer(seconds=2.0, speed=4.0)
    r = run(steps, until=6)
    [(t, signal)] = r.settled()
    assert t == pytest.approx(2.01 + 0.5, abs=0.06)
    assert signal.decided_by == "estimated"


def test_a_finished_report_before_generation_ends_counts_only_if_it_covers_the_audio() -> None:
    # Generated slower than playback (0.6x): the speaker keeps draining and says finished at
    # 1 s, but more audio comes; only the final finished report (covering all 3 s) decides.
    steps, gen_end = answer(seconds=3.0, speed=0.6)
    steps += reports(0.2, gen_end + 0.4, played=lambda t: min(t * 600, 3000))
    steps.append((1.0, PlaybackReport("r1", 600, True)))
    steps.append((gen_end + 0.5, PlaybackReport("r1", 3000, True)))
    r = run(steps, until=gen_end + 3)
    [(t, signal)] = r.settled()
    assert t == pytest.approx(gen_end + 0.5, abs=0.06)
    assert signal.decided_by == "reported"


def test_over_reporting_client_is_held_to_the_clock() -> None:
    # 1 s of audio generated in 0.25 s; the client claims all of it played at 0.3 s.
    steps, _ = answer(seconds=1.0, speed=4.0)
    steps.append((0.3, PlaybackReport("r1", 99_000, True)))
    r = run(steps, until=3)
    [(t, signal)] = r.settled()
    # Not before the audio could have been played out (first frame + 1 s, less the tolerance).
    assert t == pytest.approx(0.01 + 1.0 - 0.15, abs=0.06)
    assert signal.decided_by == "reported"


def test_finished_after_generation_decides_even_if_its_progress_lags() -> None:
    steps, _ = answer(seconds=1.0, speed=4.0)
    steps.append((1.2, PlaybackReport("r1", 500, True)))
    [(t, signal)] = run(steps, until=3).settled()
    assert t == pytest.approx(1.2) and signal.decided_by == "reported"


def test_tool_only_response_settles_at_response_done() -> None:
    steps: list[Step] = [(0.0, created()), (0.2, call()), (0.21, done())]
    r = run(steps, until=1)
    [(t, signal)] = r.settled()
    assert t == pytest.approx(0.21) and signal.decided_by == "no_audio"


def test_a_response_without_calls_settles_without_a_signal() -> None:
    steps, _ = answer(seconds=1.0, speed=4.0, calls=0)
    r = run(steps, until=4)
    assert r.settled() == []
    assert len(r.records("decision.playback_done")) == 1


# ---- barge-in ----


@pytest.mark.parametrize("speed", [0.6, 1.0, 4.0])
def test_barge_in_before_playback_finished_interrupts_whatever_the_generation_status(
    speed: float,
) -> None:
    steps, gen_end = answer(seconds=3.0, speed=speed)
    steps += reports(0.2, 1.4, played=lambda t: t * 1000)
    steps.append((1.5, ev("input_audio_buffer.speech_started")))
    generated_ms = 100 * sum(1 for t, e in steps if isinstance(e, AudioDelivered) and t <= 1.5)
    r = run(steps, until=gen_end + 3)
    [(t, signal)] = r.settled()
    assert signal.interrupted is True
    assert t == pytest.approx(max(1.5, gen_end), abs=0.06)
    [(_, stop)] = r.at(StopPlayback)
    assert stop.item_id == "i1"
    [(_, truncate)] = r.sent("conversation.item.truncate")
    # What the client last reported, clamped to what had been generated.
    assert truncate["audio_end_ms"] == min(1400, generated_ms)


def test_barge_in_after_playback_finished_interrupts_nothing() -> None:
    steps, _ = answer(seconds=1.0, speed=4.0)
    steps.append((1.2, PlaybackReport("r1", 1000, True)))
    steps.append((2.0, ev("input_audio_buffer.speech_started")))
    r = run(steps, until=3)
    [(_, signal)] = r.settled()
    assert signal.interrupted is False
    assert r.at(StopPlayback) == [] and r.sent("conversation.item.truncate") == []


def test_barge_in_before_any_audio_deletes_the_item() -> None:
    steps: list[Step] = [
        (0.0, created()),
        (0.0, message_item()),
        (0.1, ev("input_audio_buffer.speech_started")),
        (0.2, done(status="cancelled")),
    ]
    r = run(steps, until=1)
    assert [e["item_id"] for _, e in r.sent("conversation.item.delete")] == ["i1"]
    assert r.sent("conversation.item.truncate") == []


def test_a_cancelled_response_is_interrupted_even_without_a_barge_in_seen() -> None:
    steps: list[Step] = [(0.0, created()), (0.1, call()), (0.2, done(status="cancelled"))]
    [(_, signal)] = run(steps, until=1).settled()
    assert signal.interrupted is True


# ---- the floor and response serialisation ----


def outputs(*call_ids: str, outcome: str = "succeeded") -> ToolOutcomes:
    return ToolOutcomes(
        tuple(
            ToolOutput(call_id=c, name="check_answer", outcome=outcome, output="{}")
            for c in call_ids
        )
    )


def test_outputs_wait_while_the_user_speaks_and_the_turn_gets_one_response() -> None:
    steps, _ = answer(seconds=1.0, speed=4.0)
    steps += [
        (2.0, ev("input_audio_buffer.speech_started")),
        (2.2, outputs("c1")),
        (2.9, ev("input_audio_buffer.speech_stopped")),
        (3.0, ev("input_audio_buffer.committed")),
    ]
    r = run(steps, until=5)
    [(t_out, _)] = r.sent("conversation.item.create")
    creates = r.sent("response.create")
    assert t_out == pytest.approx(2.2)  # the output goes in at once...
    assert [t for t, _ in creates] == [pytest.approx(3.0)]  # ...the response after the turn


def test_a_false_start_releases_the_floor_after_the_bound() -> None:
    steps: list[Step] = [
        (0.0, ev("input_audio_buffer.speech_started")),
        (0.1, UserText("hello")),
        (0.3, ev("input_audio_buffer.speech_stopped")),
    ]
    r = run(steps, until=3)
    [(t, _)] = r.sent("response.create")
    assert t == pytest.approx(0.3 + TurnConfig().floor_release_s, abs=0.06)


def test_one_response_create_per_batch_and_none_while_one_is_active() -> None:
    steps: list[Step] = [
        (0.0, ev("input_audio_buffer.committed")),
        (0.1, created("r1")),
        (0.2, outputs("a", "b")),
        (0.3, outputs("c")),
        (0.5, done("r1")),
    ]
    r = run(steps, until=1)
    assert [t for t, _ in r.sent("response.create")] == [0.0, pytest.approx(0.5)]
    assert len(r.records("decision.response_deferred")) == 1


def test_active_response_race_is_retried_after_response_done() -> None:
    steps: list[Step] = [
        (0.0, created("server")),
        (0.1, ev("input_audio_buffer.committed")),
        (0.2, ev("error", error={"code": "conversation_already_has_active_response"})),
        (0.4, done("server")),
    ]
    r = run(steps, until=1)
    assert [t for t, _ in r.sent("response.create")] == [pytest.approx(0.4)]


def test_context_is_injected_before_the_response_only_when_it_changed() -> None:
    steps: list[Step] = [
        (0.0, ScreenChanged({"screen": "a"}, "ha")),
        (0.1, ev("input_audio_buffer.committed")),
        (0.2, created("r1")),
        (0.3, done("r1")),
        (0.4, ev("input_audio_buffer.committed")),
        (0.5, created("r2")),
        (0.6, done("r2")),
        (0.7, ScreenChanged({"screen": "b"}, "hb")),
        (0.8, ev("input_audio_buffer.committed")),
    ]
    r = run(steps, until=1)
    kinds = [
        c.event["type"] if isinstance(c, SendModel) else c.kind
        for _, c in r.commands
        if isinstance(c, SendModel) or (isinstance(c, Record) and "context" in c.kind)
    ]
    assert kinds == [
        "conversation.item.create",
        "decision.context_injected",
        "response.create",
        "response.create",
        "conversation.item.create",
        "decision.context_injected",
        "conversation.item.delete",
        "decision.context_deleted",
        "response.create",
    ]


# ---- outcomes: recorded once, closed once per conversation ----


def test_an_outcome_that_arrives_twice_is_recorded_and_closed_once() -> None:
    r = run([(0.0, outputs("c1")), (0.5, outputs("c1"))], until=1)
    assert len(r.records("decision.tool_output")) == 1
    assert len(r.sent("conversation.item.create")) == 1
    assert len(r.sent("response.create")) == 1


def test_a_dropped_call_is_closed_in_the_conversation_without_a_new_response() -> None:
    drop = dropped_output(
        ToolCall(call_id="c1", name="end_call", arguments="{}", response_id="r1", seq=1),
        reason="interrupted",
    )
    r = run([(0.0, ToolOutcomes((drop,)))], until=1)
    [(_, recorded)] = r.records("decision.tool_dropped")
    assert recorded["reason"] == "interrupted"
    [(_, item)] = r.sent("conversation.item.create")
    assert item["item"]["type"] == "function_call_output" and "cancelled" in item["item"]["output"]
    assert r.sent("response.create") == []


def test_outcomes_while_the_link_is_down_are_sent_once_a_link_exists_again() -> None:
    r = run(
        [
            (0.0, LinkDown("socket dropped")),
            (0.2, outputs("c1")),
            (0.3, outputs("c1")),
            (1.0, LinkUp()),
        ],
        until=2,
    )
    assert len(r.records("decision.tool_output")) == 1
    [(t, _)] = r.sent("conversation.item.create")
    assert t == pytest.approx(1.0)
    assert [t for t, _ in r.sent("response.create")] == [pytest.approx(1.0)]


def test_a_rebuilt_link_that_already_holds_the_output_gets_no_second_one() -> None:
    r = run(
        [(0.0, LinkDown("x")), (0.2, outputs("c1")), (1.0, LinkUp(closed_calls=frozenset({"c1"})))],
        until=2,
    )
    assert r.sent("conversation.item.create") == []


def test_an_outcome_the_log_already_has_is_not_recorded_again() -> None:
    r = run([(0.0, LinkUp(recorded_outcomes=frozenset({"c1"}))), (0.1, outputs("c1"))], until=1)
    assert r.records("decision.tool_output") == []
    assert len(r.sent("conversation.item.create")) == 1


# ---- breaks ----


def test_a_stream_that_breaks_mid_answer_settles_its_calls_to_run() -> None:
    steps, _ = answer(seconds=3.0, speed=1.0)
    steps = [s for s in steps if s[0] < 1.0] + [(0.9, call()), (1.0, Detached("client gone"))]
    r = run(steps, until=2)
    [(t, signal)] = r.settled()
    assert t == pytest.approx(1.0)
    assert (signal.decided_by, signal.interrupted) == ("detached", False)
    assert [c.call_id for c in signal.calls] == ["c1"]


def test_a_link_drop_mid_generation_still_waits_for_playback() -> None:
    steps = [*audio(0.0, 2.0, speed=4.0)[:10], (0.0, created()), (0.0, message_item())]
    steps += [(0.2, call()), (0.3, LinkDown("socket dropped"))]
    r = run(steps, until=4)
    [(t, signal)] = r.settled()
    # 1 s of audio was delivered; the client plays it, then the estimate decides.
    assert t == pytest.approx(1.0 + 0.5, abs=0.06)
    assert signal.interrupted is False


def test_a_create_in_flight_when_the_link_drops_is_sent_again_on_the_next_link() -> None:
    r = run(
        [(0.0, ev("input_audio_buffer.committed")), (0.1, LinkDown("x")), (1.0, LinkUp())],
        until=2,
    )
    assert [t for t, _ in r.sent("response.create")] == [0.0, pytest.approx(1.0)]


def test_nothing_is_sent_to_a_link_that_is_down() -> None:
    r = run(
        [(0.0, LinkDown("x")), (0.1, UserText("hi")), (0.2, ev("input_audio_buffer.committed"))],
        until=1,
    )
    assert r.sent("response.create") == []
    [(_, deferred)] = r.records("decision.response_deferred")
    assert deferred["waiting_for"] == "model_link"


def test_counts_ride_along_with_the_next_signal() -> None:
    steps: list[Step] = [
        (0.0, ev("input_audio_buffer.committed")),
        (0.1, created("r0")),
        (0.2, done("r0")),
        (0.3, ev("input_audio_buffer.committed")),
        (0.4, created("r1")),
        (0.5, call()),
        (0.6, done("r1")),
    ]
    [(_, signal)] = run(steps, until=1).settled()
    assert (signal.turns, signal.responses) == (2, 2)


def test_calls_still_held_when_the_session_ends_are_dropped_once() -> None:
    steps, _ = answer(seconds=3.0, speed=4.0)
    steps.append((1.0, Detached("ended", session_ending=True)))
    r = run(steps, until=2)
    assert r.settled() == []
    [(_, dropped)] = r.records("decision.tool_dropped")
    assert dropped["reason"] == "session_ended"
