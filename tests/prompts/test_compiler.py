"""The compiler: deterministic, briefing-shaped, and always carrying the Realtime rules."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.prompts import (
    CONTEXT_UPDATE_RULE,
    TOOL_ORDER_RULE,
    compile_persona,
    lint_prompt,
    load_persona,
    prompt_hash,
)
from services.prompts.hedges import hedge_patterns
from tests.prompts.test_spec import EXAMPLES, dump, minimal

GOLDEN = Path(__file__).parent / "golden"
PERSONAS = sorted(EXAMPLES.glob("*.yaml"))

VOICE_FIRST = "respond conversationally, in 1-2 sentences, like you're sitting next to the user"


def compiled_minimal(**changes: Any) -> str:
    data = minimal()
    data.update(changes)
    return compile_persona(load_persona(dump(data))).instructions


def test_there_are_at_least_three_example_personas() -> None:
    names = {path.stem for path in PERSONAS}
    assert "screen_tutor" in names
    assert len(names) >= 3


@pytest.mark.parametrize("path", PERSONAS, ids=[p.stem for p in PERSONAS])
def test_example_personas_compile_and_lint_clean(path: Path) -> None:
    compiled = compile_persona(load_persona(path.read_text(encoding="utf-8")))
    assert lint_prompt(compiled.instructions, tools_configured=True) == []
    assert lint_prompt(compiled.instructions, tools_configured=False) == []


@pytest.mark.parametrize("path", PERSONAS, ids=[p.stem for p in PERSONAS])
def test_compiled_output_matches_golden_and_its_hash(path: Path) -> None:
    """A wording change in the compiler changes every prompt hash; make it on purpose."""
    compiled = compile_persona(load_persona(path.read_text(encoding="utf-8")))
    golden = (GOLDEN / f"{path.stem}.txt").read_text(encoding="utf-8")
    assert compiled.instructions + "\n" == golden
    assert compiled.prompt_hash == hashlib.sha256(golden[:-1].encode("utf-8")).hexdigest()


def test_screen_tutor_hash_is_pinned() -> None:
    compiled = compile_persona(load_persona((EXAMPLES / "screen_tutor.yaml").read_text()))
    assert compiled.prompt_hash == (
        "883456b31f5da4fdfa26348431865470007bd2d914d2d77e291c76387e800767"
    )


def test_compilation_is_deterministic() -> None:
    text = (EXAMPLES / "screen_tutor.yaml").read_text(encoding="utf-8")
    first = compile_persona(load_persona(text))
    second = compile_persona(load_persona(text))
    assert first == second
    assert first.prompt_hash == prompt_hash(first.instructions)
    assert re.fullmatch(r"[0-9a-f]{64}", first.prompt_hash)


def test_key_order_in_the_yaml_does_not_change_the_hash() -> None:
    data = yaml.safe_load((EXAMPLES / "screen_tutor.yaml").read_text(encoding="utf-8"))
    shuffled = dict(reversed(list(data.items())))
    a = compile_persona(load_persona(dump(data)))
    b = compile_persona(load_persona(dump(shuffled)))
    assert a.prompt_hash == b.prompt_hash


def test_any_content_change_changes_the_hash() -> None:
    assert compiled_minimal(tone="warm and plain") != compiled_minimal(tone="warm and brisk")
    base = compile_persona(load_persona(dump(minimal())))
    other = compile_persona(load_persona(dump({**minimal(), "tone": "brisk"})))
    assert base.prompt_hash != other.prompt_hash


def test_briefing_carries_the_realtime_rules() -> None:
    text = compile_persona(
        load_persona((EXAMPLES / "screen_tutor.yaml").read_text(encoding="utf-8"))
    ).instructions
    assert text.startswith("You are Maya, a software tutor")
    assert VOICE_FIRST in text
    assert TOOL_ORDER_RULE in text
    assert CONTEXT_UPDATE_RULE in text
    assert '"Context update:"' in text
    assert "When the user is confused, you " in text
    assert "When the user goes off topic, you " in text
    assert "You call highlight_element when you point the user at a control" in text
    assert "When the user asks for steps, you give them numbered, one at a time" in text
    # The ordering rule comes before the tools it governs.
    assert text.index(TOOL_ORDER_RULE) < text.index("You call highlight_element")


def test_briefing_is_second_person_imperative_prose() -> None:
    text = compile_persona(
        load_persona((EXAMPLES / "support_agent.yaml").read_text(encoding="utf-8"))
    ).instructions
    openers = ("You ", "Your ", "When ", "Above all", "Always ", "A user message")
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
        assert sentence.startswith(openers), sentence
    assert not re.search(r"^\s*(?:#|[-*•]\s|\d+[.)]\s|\|)", text, re.MULTILINE)
    assert not any(pattern.search(text) for pattern in hedge_patterns())


def test_no_tools_means_no_tool_paragraph() -> None:
    text = compiled_minimal()
    assert TOOL_ORDER_RULE not in text
    assert "You call" not in text
    assert CONTEXT_UPDATE_RULE in text
    assert lint_prompt(text, tools_configured=False) == []


def test_session_tools_bring_the_ordering_rule_even_without_persona_tools() -> None:
    spec = load_persona(dump(minimal()))
    text = compile_persona(spec, session_tools=["search_docs"]).instructions
    assert TOOL_ORDER_RULE in text
    assert "You call no other tools" not in text


def test_voice_first_can_be_switched_off_and_the_linter_notices() -> None:
    text = compiled_minimal(pacing={"voice_first": False})
    assert "sitting next to the user" not in text
    assert [f.rule for f in lint_prompt(text, tools_configured=False)] == ["no-voice-first"]


@pytest.mark.parametrize(
    ("count", "phrase"),
    [(1, "in one sentence,"), (2, "in 1-2 sentences,"), (3, "in 1-3 sentences,")],
)
def test_max_sentences_shapes_the_framing(count: int, phrase: str) -> None:
    text = compiled_minimal(pacing={"max_sentences": count})
    assert f"respond conversationally, {phrase} like you're sitting next to the user" in text
    assert lint_prompt(text, tools_configured=False) == []


def test_fragments_are_normalised_into_sentences() -> None:
    text = compiled_minimal(
        personality="You are a calm teacher who never rushes anyone.",
        tone="Your tone is warm and plain.",
        confusion="You go back one step.",
        off_topic="Answer briefly, then steer back.",
        rules=[
            {"when": "When the user asks for steps,", "do": "Give them one at a time."},
            {"when": "Figma shows an error", "do": "you read it out in plain words"},
        ],
        tools=[{"name": "highlight_element", "when": "When you point at a control"}],
        pacing={"style": "Pause after each instruction."},
    )
    assert "Above all, you are a calm teacher who never rushes anyone." in text
    assert "Your tone is warm and plain." in text
    assert "When the user is confused, you go back one step." in text
    assert "When the user goes off topic, you answer briefly, then steer back." in text
    assert "When the user asks for steps, you give them one at a time." in text
    assert "When Figma shows an error, you read it out in plain words." in text
    assert "You call highlight_element when you point at a control." in text
    assert "You pause after each instruction." in text
    assert "When when" not in text and "you you" not in text.lower() and ".." not in text


def test_hedges_in_the_spec_survive_and_are_flagged() -> None:
    """The compiler does not silently rewrite the author's words; the linter reports them."""
    text = compiled_minimal(tone="warm, and usually brief")
    findings = lint_prompt(text, tools_configured=False)
    assert [f.rule for f in findings] == ["hedge"]
    assert findings[0].rewrite.startswith("Your tone is warm, and brief.")
