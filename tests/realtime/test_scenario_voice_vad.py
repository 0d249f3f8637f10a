"""Scenario schema, speech synthesis, and the energy VAD's byte-position timing."""

from __future__ import annotations

import json
from array import array
from pathlib import Path

import pytest

from services.realtime.simulator import (
    Scenario,
    ScenarioError,
    builtin_scenario_names,
    load_builtin_scenario,
    load_scenario,
    silence,
    synthesize_speech,
    synthesize_utterance,
)
from services.realtime.simulator.vad import EnergyVad, SpeechStarted, SpeechStopped, VadSettings
from services.realtime.simulator.voice import BYTES_PER_MS, pcm_duration_ms

# ----------------------------------------------------------------------------- scenarios


def test_every_packaged_scenario_loads() -> None:
    names = builtin_scenario_names()
    assert "tutoring" in names
    for name in names:
        scenario = load_builtin_scenario(name)
        assert scenario.name == name
        assert scenario.responses


def test_tutoring_is_three_user_turns_with_one_tool_call() -> None:
    scenario = load_scenario("tutoring")
    assert len(scenario.user_utterances) == 3
    calls = [call for response in scenario.responses for call in response.function_calls]
    assert [call.name for call in calls] == ["mark_step_complete"]
    assert json.loads(calls[0].arguments) == {"lesson_id": "fractions-101", "step": 1}


def test_scenario_from_yaml_with_every_feature(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        """
name: all
session: {lifetime_s: 2, drop_after_responses: 3, pacing: fast, audio_delta_ms: 40}
user_utterances: ["hello"]
responses:
  - say: "Hi."
    function_calls:
      - {name: f, arguments: {a: 1}, at: mid_audio, fraction: 0.25}
      - {name: g, arguments_raw: '{"broken": '}
  - function_calls: [{name: h}]
fallback: {say: "Done."}
""",
        encoding="utf-8",
    )
    scenario = load_scenario(path)
    assert scenario.session.lifetime_s == 2
    assert scenario.session.audio_delta_ms == (40, 40)
    first = scenario.responses[0]
    assert first.function_calls[0].at == "mid_audio"
    assert first.function_calls[0].arguments == '{"a":1}'
    assert first.function_calls[1].arguments == '{"broken": '
    assert scenario.responses[1].tool_only
    assert scenario.responses[1].function_calls[0].arguments == "{}"
    assert scenario.response_at(5).say == "Done."


def test_scenario_fidelity_options_from_yaml() -> None:
    scenario = Scenario.from_yaml(
        """
name: fidelity
session:
  generation_speed: [1.5, 3]
  transcription_order: after_response
  seed: 7
  rate_limits: {requests: 10, tokens: 900}
user_utterances:
  - "plain line"
  - {text: "Mumble.", transcription: failed}
  - {text: "Two. Sentences.", speaker: teacher}
responses:
  - say: "Cut short."
    generation_speed: 0.6
    ending: {status: incomplete, reason: content_filter, at_fraction: 0.2}
  - say: "Broken."
    ending: {status: failed, error: {code: upstream_down}}
"""
    )
    session = scenario.session
    assert session.generation_speed == (1.5, 3.0)
    assert (session.transcription_order, session.seed) == ("after_response", 7)
    assert dict(session.rate_limits) == {"requests": 10, "tokens": 900}
    assert scenario.user_utterances == ("plain line", "Mumble.", "Two. Sentences.")
    assert [u.transcription for u in scenario.utterances] == ["completed", "failed", "completed"]
    assert scenario.utterances[2].speaker == "teacher"
    first, second = scenario.responses
    assert first.generation_speed == 0.6
    assert first.ending is not None and first.ending.reason == "content_filter"
    assert first.ending.at_fraction == 0.2
    assert second.ending is not None and second.ending.status == "failed"
    assert second.ending.at_fraction == 0.5
    assert dict(second.ending.error or {}) == {"code": "upstream_down"}


def test_built_in_scenarios_pin_what_their_tests_rely_on() -> None:
    """barge_in is deliberately generated slower than playback (its gateway test asserts the
    wall-clock estimate overshoots what was generated); the rest take the default spread."""
    assert load_builtin_scenario("barge_in").session.generation_speed == 0.9
    assert load_builtin_scenario("tutoring").session.generation_speed == (2.0, 8.0)


@pytest.mark.parametrize(
    ("document", "mistake"),
    [
        ({"name": "x", "responses": [{"say": "a"}], "extra": 1}, "extra"),
        (
            {"name": "x", "responses": [{"say": "a"}], "session": {"generation_speed": [4, 2]}},
            "min 4 > max 2",
        ),
        (
            {"name": "x", "responses": [{"say": "a"}], "session": {"generation_speed": 0}},
            "generation_speed",
        ),
        (
            {"name": "x", "responses": [{"say": "a", "ending": {"status": "incomplete"}}]},
            "ending",
        ),
        (
            {"name": "x", "responses": [{"say": "a"}], "user_utterances": [{"txt": "a"}]},
            "user_utterances/0",
        ),
        ({"responses": [{"say": "a"}]}, "name"),
        ({"name": "x", "responses": [{}]}, "responses/0"),
        ({"name": "x", "responses": [{"say": "a", "voice": "x"}]}, "voice"),
        (
            {"name": "x", "responses": [{"function_calls": [{"name": "f", "at": "mid_audio"}]}]},
            "fraction",
        ),
        (
            {
                "name": "x",
                "responses": [
                    {"function_calls": [{"name": "f", "arguments": {}, "arguments_raw": "{}"}]}
                ],
            },
            "function_calls/0",
        ),
        ({"name": "x", "responses": [{"say": "a"}], "session": {"pacing": "slow"}}, "pacing"),
        ({"name": "x", "responses": [{"say": "a"}], "session": {"lifetime_s": 0}}, "lifetime_s"),
        (
            {"name": "x", "responses": [{"say": "a", "drop_at_fraction": 1.5}]},
            "drop_at_fraction",
        ),
    ],
)
def test_schema_rejects_bad_scenarios(document: dict[str, object], mistake: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(document, source="bad.yaml")
    assert "bad.yaml" in str(caught.value)
    assert mistake in str(caught.value)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        Scenario.from_yaml("name: [unclosed", source="broken.yaml")
    with pytest.raises(ScenarioError, match="mapping"):
        Scenario.from_yaml("- a list", source="list.yaml")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")


# ----------------------------------------------------------------------------- voice


def _rms(pcm: bytes) -> float:
    samples = array("h", pcm)
    return (sum(s * s for s in samples) / max(1, len(samples))) ** 0.5 / 32768


def test_synthesis_is_deterministic_and_grows_with_text() -> None:
    short = synthesize_speech("Hello there.")
    assert short == synthesize_speech("Hello there.")
    longer = synthesize_speech("Hello there, how are you doing with fractions today?")
    assert pcm_duration_ms(longer) > 2 * pcm_duration_ms(short)
    assert len(short) % 2 == 0


def test_synthesis_has_the_energy_shape_of_speech() -> None:
    spoken = synthesize_utterance("One two three four.")
    assert [word.text.strip() for word in spoken.words] == ["One", "two", "three", "four."]
    first, second = spoken.words[0], spoken.words[1]
    voiced = spoken.pcm[
        int(first.start_ms + 40) * BYTES_PER_MS : int(first.end_ms - 40) * BYTES_PER_MS
    ]
    gap = spoken.pcm[int(first.end_ms) * BYTES_PER_MS : int(second.start_ms) * BYTES_PER_MS]
    assert _rms(voiced) > 0.05  # loud vowels
    assert gap and _rms(gap) == 0.0  # short quiet gaps between words


def test_synthesis_for_a_duration_and_silence() -> None:
    assert pcm_duration_ms(synthesize_speech(1.5)) == 1500
    assert len(silence(20)) == 960
    assert set(silence(5)) == {0}
    with pytest.raises(ValueError, match="empty"):
        synthesize_utterance("   ")


# ----------------------------------------------------------------------------- VAD


def _run_vad(audio: bytes, *, chunk: int, settings: VadSettings) -> list[object]:
    vad = EnergyVad(settings)
    events: list[object] = []
    for offset in range(0, len(audio), chunk):
        events.extend(vad.feed(audio[offset : offset + chunk]))
    return events


def test_vad_times_come_from_byte_positions_whatever_the_chunking() -> None:
    speech = synthesize_speech("Can you help me with this exercise?")
    audio = silence(1000) + speech + silence(900)
    settings = VadSettings(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)
    by_frames = _run_vad(audio, chunk=960, settings=settings)
    by_odd_chunks = _run_vad(audio, chunk=1234, settings=settings)
    assert by_frames == by_odd_chunks
    started, stopped = by_frames
    assert isinstance(started, SpeechStarted) and isinstance(stopped, SpeechStopped)
    # Speech begins at 1000 ms; the start includes the prefix padding.
    assert 1000 - 300 <= started.audio_start_ms <= 1000 - 300 + 30
    # Speech ends at 1000 + duration; the end includes the silence duration.
    speech_end = 1000 + pcm_duration_ms(speech)
    assert speech_end + 500 - 20 <= stopped.audio_end_ms <= speech_end + 500 + 20


def test_vad_hysteresis_keeps_one_turn_across_word_gaps() -> None:
    audio = silence(200) + synthesize_speech("One, two, three. Four five six.") + silence(800)
    events = _run_vad(audio, chunk=960, settings=VadSettings(silence_duration_ms=400))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]


def test_vad_splits_turns_on_long_silence_and_ignores_quiet_audio() -> None:
    turn = synthesize_speech(0.8)
    audio = turn + silence(700) + turn + silence(700)
    events = _run_vad(audio, chunk=960, settings=VadSettings(silence_duration_ms=500))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped] * 2
    second_start = events[2]
    assert isinstance(second_start, SpeechStarted)
    # The second turn's prefix padding may not reach back into the first turn.
    first_stop = events[1]
    assert isinstance(first_stop, SpeechStopped)
    assert second_start.audio_start_ms >= first_stop.audio_end_ms

    quiet = array("h", [s // 200 for s in array("h", turn)]).tobytes()
    assert _run_vad(quiet + silence(700), chunk=960, settings=VadSettings(threshold=0.5)) == []
