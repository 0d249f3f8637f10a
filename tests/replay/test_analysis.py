"""The analysis as a pure function of the log: synthetic logs in, timeline and metrics out."""

from __future__ import annotations

import pytest

from services.replay.analysis import analyse, heard_text
from services.replay.prices import PriceTable
from tests.replay.events import Log, two_turn_log


@pytest.mark.parametrize(
    ("transcript", "heard", "generated", "expected"),
    [
        ("one two three four", 0, 4000, ""),
        ("one two three four", 1000, 4000, "one"),
        ("one two three four", 2000, 4000, "one two"),
        ("one two three four", 4000, 4000, "one two three four"),
        ("one two three four", 9000, 4000, "one two three four"),
        ("one two", 100, 0, "one two"),
    ],
)
def test_heard_text_cuts_in_proportion(
    transcript: str, heard: int, generated: int, expected: str
) -> None:
    assert heard_text(transcript, heard, generated) == expected


def test_two_turns() -> None:
    a = analyse(two_turn_log().events)
    assert (a.tenant_id, a.prompt_hash, a.persona, a.duration_ms) == ("t", "abc123", "Maya", 7400)
    assert [t.user_transcript for t in a.turns] == ["what is a fraction", "and two thirds", ""]
    assert [t.responses for t in a.turns] == [["r1"], ["r2"], []]
    r1, r2 = a.responses["r1"], a.responses["r2"]
    assert (r1.requested_ms, r1.first_audio_ms, r1.generated_ms, r1.played_ms) == (
        1150, 1400, 2000, 2000
    )  # fmt: skip
    assert r1.heard_transcript == r1.transcript
    assert (r2.interrupted, r2.heard_ms, r2.generated_ms, r2.played_ms) == (True, 1000, 3000, 1000)
    assert r2.heard_transcript == "Two thirds means two"  # 1 s of 3 s: a third of 11 words
    assert a.turns[2].barged_in
    [cut] = a.interruptions
    assert (cut.at_ms, cut.response_id, cut.audio_end_ms) == (7000, "r2", 1000)

    call = a.tools["c1"]
    assert (call.requested_ms, call.held_ms, call.speech_done_ms) == (1500, 1600, 3400)
    assert (call.started_ms, call.finished_ms, call.outcome) == (3450, 3500, "succeeded")
    assert call.decisions == [
        "decision.tool_held",
        "decision.tool_output",
        "decision.some_new_kind",
    ]
    assert (call.speech_done_to_start_ms, call.duration_ms) == (50, 50)

    [ctx] = a.contexts
    assert (ctx.at_ms, ctx.item_id, ctx.state) == (1150, "ctx_1", {"step": 1})
    assert [(link.kind, link.reason) for link in a.links] == [
        ("model.link_lost", "socket closed"),
        ("model.link_rebuilt", "link_lost"),
    ]
    [err] = a.errors
    assert (err.kind, err.code, err.severity) == ("model.server.error", "rate_limit", "x")
    assert [(s.start_ms, s.end_ms) for s in a.user_speech] == [
        (100, 1100),
        (5000, 5800),
        (7000, 7400),
    ]
    assert [(s.start_ms, s.end_ms) for s in a.assistant_speech] == [(1400, 3400), (6000, 7000)]
    assert "totally.unknown" not in {e.kind for e in a.entries}


def test_metrics() -> None:
    m = analyse(two_turn_log().events).metrics
    assert m is not None
    t1, t2, _ = m.turns
    assert (t1.first_audio_latency_ms, t1.earpiece_ms, t1.model_ms) == (300, 50, 250)
    assert (t2.first_audio_latency_ms, t2.earpiece_ms, t2.model_ms) == (200, 50, 150)
    assert (t1.interrupted, t2.interrupted, t1.tool_calls) == (False, True, 1)
    assert (t1.user_talk_ms, t1.assistant_talk_ms) == (1000, 2000)
    assert (t2.user_talk_ms, t2.assistant_talk_ms) == (800, 1000)
    assert (m.first_audio_latency_p50_ms, m.first_audio_latency_max_ms) == (300, 300)
    assert m.speech_done_to_tool_start_ms == [50] and m.tool_durations_ms == [50]
    assert (m.interruptions, m.user_talk_ms, m.assistant_talk_ms) == (1, 2200, 3000)
    assert m.usage["input_tokens"] == 1000 and m.usage["output_token.audio_tokens"] == 150
    # 300 uncached text in at $4, 500 cached text in at $0.40, 200 audio in at $32,
    # 50 text out at $16, 150 audio out at $64 (per million)
    expected = (300 * 4 + 500 * 0.4 + 200 * 32 + 50 * 16 + 150 * 64) / 1e6
    assert m.cost_usd == pytest.approx(expected)


def test_price_table_from_configuration(tmp_path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("cheap:\n  text_input: 1.0\n  text_output: 2.0\n")
    table = PriceTable.from_env({"EARPIECE_PRICES": str(path), "OPENAI_REALTIME_MODEL": "cheap"})
    assert table.cost({"input_tokens": 1_000_000, "output_tokens": 500_000}) == 2.0
    path.write_text("cheap:\n  txt_input: 1.0\n")
    with pytest.raises(ValueError, match="prices are"):
        PriceTable.from_env({"EARPIECE_PRICES": str(path)})


def test_an_empty_or_odd_log_does_not_break() -> None:
    assert analyse([]).metrics is not None
    log = Log().at(0).add("model.server.response.done", {"response": {}})
    log.add("decision.tool_dropped", {"call_id": "x"}).add("model.server.error", {})
    a = analyse(log.events)
    assert a.tools["x"].outcome == "dropped"
    log = Log().at(0).add("client.audio", stream="input", length=960).add("x.y", {})
    assert analyse(log.events).input_audio_ms == 20
