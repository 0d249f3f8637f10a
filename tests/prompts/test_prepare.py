"""prepare_prompt: what the gateway calls in StartSession."""

from __future__ import annotations

import json

import pytest

from services.prompts import (
    TOOL_ORDER_RULE,
    PersonaSpecError,
    PreparedPrompt,
    PromptError,
    PromptRejected,
    PromptSourceError,
    Severity,
    compile_persona,
    load_persona,
    prepare_prompt,
    prompt_hash,
)
from tests.prompts.test_spec import EXAMPLES, dump, minimal

TUTOR = (EXAMPLES / "screen_tutor.yaml").read_text(encoding="utf-8")
TUTOR_TOOLS = ["highlight_element", "mark_step_complete"]
CLEAN_RAW = (
    (EXAMPLES.parent.parent / "tests" / "prompts" / "corpus" / "clean_no_tools.txt")
    .read_text(encoding="utf-8")
    .split("\n---\n", 1)[1]
)


def test_persona_prepares_with_voice_hash_and_no_warnings() -> None:
    prepared = prepare_prompt(persona_yaml=TUTOR, instructions=None, tools=TUTOR_TOOLS)
    compiled = compile_persona(load_persona(TUTOR), session_tools=TUTOR_TOOLS)
    assert prepared == PreparedPrompt(
        instructions=compiled.instructions,
        prompt_hash=compiled.prompt_hash,
        voice="shimmer",
        speed=pytest.approx(0.95),  # type: ignore[arg-type]
        persona_name="Maya",
        warnings=[],
    )


def test_raw_instructions_are_used_verbatim() -> None:
    prepared = prepare_prompt(persona_yaml="", instructions=CLEAN_RAW, tools=[])
    assert prepared.instructions == CLEAN_RAW
    assert prepared.prompt_hash == prompt_hash(CLEAN_RAW)
    assert prepared.voice is None and prepared.speed is None and prepared.persona_name is None
    assert prepared.warnings == []


def test_few_shot_instructions_are_rejected_with_findings() -> None:
    text = CLEAN_RAW + "User: How do I undo?\nAssistant: Press Command Z.\n"
    with pytest.raises(PromptRejected) as caught:
        prepare_prompt(persona_yaml=None, instructions=text, tools=[])
    rejected = caught.value
    assert [f.rule for f in rejected.errors] == ["few-shot-dialogue"]
    assert rejected.errors[0].line == len(CLEAN_RAW.splitlines()) + 1
    assert "few-shot-dialogue" in str(rejected)
    assert isinstance(rejected, PromptError) and isinstance(rejected, ValueError)
    # Findings are JSON-able, for the gRPC error details.
    payload = json.loads(json.dumps([f.to_dict() for f in rejected.findings]))
    assert payload[0]["severity"] == "error"
    assert set(payload[0]) == {"severity", "rule", "line", "excerpt", "message", "why", "rewrite"}


def test_a_persona_whose_rules_script_replies_is_rejected() -> None:
    data = minimal()
    data["rules"] = [{"when": 'the user says "I give up"', "do": 'say "That is okay, rest a bit."'}]
    with pytest.raises(PromptRejected) as caught:
        prepare_prompt(persona_yaml=dump(data), instructions=None, tools=[])
    assert {f.rule for f in caught.value.errors} == {"few-shot-says"}


def test_warnings_come_back_without_rejecting() -> None:
    data = minimal()
    data["tone"] = "warm, and usually brief"
    prepared = prepare_prompt(persona_yaml=dump(data), instructions=None, tools=[])
    assert [f.rule for f in prepared.warnings] == ["hedge"]
    assert all(f.severity == Severity.WARNING for f in prepared.warnings)


def test_invalid_persona_raises_spec_error_with_path() -> None:
    data = minimal()
    data["voice"] = {"name": "robot"}
    with pytest.raises(PersonaSpecError) as caught:
        prepare_prompt(persona_yaml=dump(data), instructions=None, tools=[])
    assert caught.value.path == "$.voice.name"


@pytest.mark.parametrize(
    ("persona", "instructions", "word"),
    [(None, None, "neither"), ("", "  \n", "neither"), (TUTOR, CLEAN_RAW, "both")],
)
def test_exactly_one_source(persona: str | None, instructions: str | None, word: str) -> None:
    with pytest.raises(PromptSourceError, match=word):
        prepare_prompt(persona_yaml=persona, instructions=instructions, tools=[])


def test_session_tools_without_persona_tools_still_get_the_ordering_rule() -> None:
    prepared = prepare_prompt(persona_yaml=dump(minimal()), instructions=None, tools=["search"])
    assert TOOL_ORDER_RULE in prepared.instructions
    assert [f.rule for f in prepared.warnings] == ["tool-not-described"]
    assert "search" in prepared.warnings[0].message


def test_persona_tools_the_session_lacks_are_flagged_on_their_line() -> None:
    prepared = prepare_prompt(persona_yaml=TUTOR, instructions=None, tools=["highlight_element"])
    (warning,) = prepared.warnings
    assert warning.rule == "tool-not-configured"
    assert warning.excerpt.startswith("You call mark_step_complete when")
    lines = prepared.instructions.splitlines()
    assert lines[warning.line - 1].startswith("You call mark_step_complete")


def test_raw_instructions_with_tools_need_the_ordering_rule() -> None:
    text = CLEAN_RAW + "\nYou call highlight_element when you point at a control.\n"
    prepared = prepare_prompt(persona_yaml=None, instructions=text, tools=["highlight_element"])
    assert [f.rule for f in prepared.warnings] == ["no-tool-ordering"]
    fixed = text + TOOL_ORDER_RULE + "\n"
    assert (
        prepare_prompt(persona_yaml=None, instructions=fixed, tools=["highlight_element"]).warnings
        == []
    )


@pytest.mark.parametrize("name", ["screen_tutor", "support_agent", "language_coach"])
def test_example_personas_prepare_clean_with_their_own_tools(name: str) -> None:
    text = (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")
    tools = list(load_persona(text).tool_names)
    prepared = prepare_prompt(persona_yaml=text, instructions=None, tools=tools)
    assert prepared.warnings == []
    assert prepared.voice
