"""Persona spec parsing and validation: every failure names the field path to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from services.prompts import (
    BehaviourRule,
    Pacing,
    PersonaSpecError,
    PromptError,
    ToolUse,
    Voice,
    load_persona,
    persona_schema,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "personas"


def minimal() -> dict[str, Any]:
    """The smallest valid spec; tests mutate a fresh copy."""
    return {
        "identity": {"name": "Nora", "role": "a tutor for people learning spreadsheets"},
        "personality": "a calm teacher who never rushes anyone",
        "voice": {"name": "sage"},
        "tone": "warm and plain",
        "confusion": "go back one step and explain it differently",
        "off_topic": "answer in a sentence and steer back to the task",
        "rules": [{"when": "the user asks for steps", "do": "give them one at a time"}],
        "language": "English",
    }


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def test_minimal_spec_gets_defaults() -> None:
    spec = load_persona(dump(minimal()))
    assert spec.identity.name == "Nora"
    assert spec.voice == Voice(name="sage", speed=1.0)
    assert spec.pacing == Pacing(voice_first=True, max_sentences=2, style=None)
    assert spec.rules == (
        BehaviourRule(when="the user asks for steps", do="give them one at a time"),
    )
    assert spec.tools == ()
    assert spec.tool_names == ()


def test_screen_tutor_parses_into_typed_fields() -> None:
    spec = load_persona((EXAMPLES / "screen_tutor.yaml").read_text(encoding="utf-8"))
    assert spec.identity.name == "Maya"
    assert spec.voice.name == "shimmer"
    assert spec.voice.speed == pytest.approx(0.95)
    assert spec.tools[0] == ToolUse(
        name="highlight_element",
        when="you point the user at a control, menu or panel on their screen",
    )
    assert spec.tool_names == ("highlight_element", "mark_step_complete")
    assert len(spec.rules) >= 5


def test_folded_yaml_text_becomes_single_lines() -> None:
    data = minimal()
    data["confusion"] = "go back one step\nand explain it\n  differently\n"
    spec = load_persona(dump(data))
    assert spec.confusion == "go back one step and explain it differently"


def test_schema_ships_beside_the_module_and_is_valid() -> None:
    import services.prompts as package

    path = Path(package.__file__).parent / "persona.schema.json"
    assert json.loads(path.read_text(encoding="utf-8")) == persona_schema()
    jsonschema.Draft202012Validator.check_schema(persona_schema())


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value


_DELETE = object()

INVALID = [
    ("identity.name", _DELETE, "$.identity.name", "required field is missing"),
    ("identity.nickname", "Nono", "$.identity.nickname", "unknown field"),
    ("personality", "A calm teacher. She never rushes.", "$.personality", "one sentence"),
    ("voice.speed", "fast", "$.voice.speed", "must be a number"),
    ("voice.speed", 2.0, "$.voice.speed", "at most 1.5"),
    ("voice.name", "shimer", "$.voice.name", "unknown voice 'shimer'"),
    ("tone", "   ", "$.tone", "must not be blank"),
    ("pacing", {"max_sentences": 9}, "$.pacing.max_sentences", "at most 4"),
    ("pacing", {"voice_first": "yes"}, "$.pacing.voice_first", "true or false"),
    ("rules", [], "$.rules", "at least 1 item"),
    ("rules", [{"when": "the user asks"}], "$.rules[0].do", "required field is missing"),
    (
        "tools",
        [{"name": "highlight element", "when": "you point at something"}],
        "$.tools[0].name",
        "must match",
    ),
    (
        "tools",
        [{"name": "a", "when": "you point at it"}, {"name": "a", "when": "you point again"}],
        "$.tools[1].name",
        "duplicate tool 'a'",
    ),
    ("language", False, "$.language", "must be text"),
    ("version", 2, "$.version", "must be 1"),
]


@pytest.mark.parametrize(
    ("field", "value", "path", "message"), INVALID, ids=[f"{c[0]}-{c[3]}" for c in INVALID]
)
def test_validation_errors_name_the_field(field: str, value: Any, path: str, message: str) -> None:
    data = minimal()
    _set(data, field, value)
    with pytest.raises(PersonaSpecError) as caught:
        load_persona(dump(data))
    error = caught.value
    assert error.path == path
    assert message in error.message
    assert str(error).startswith(f"{path}: ")
    assert isinstance(error, PromptError)


def test_every_problem_is_reported() -> None:
    data = minimal()
    del data["tone"]
    data["voice"]["speed"] = 3
    with pytest.raises(PersonaSpecError) as caught:
        load_persona(dump(data))
    paths = {problem.path for problem in caught.value.problems}
    assert paths == {"$.tone", "$.voice.speed"}
    assert "1 more" in caught.value.message


def test_yaml_norway_problem_is_caught_as_a_type_error() -> None:
    text = dump(minimal()).replace("language: English", "language: no")
    with pytest.raises(PersonaSpecError) as caught:
        load_persona(text)
    assert caught.value.path == "$.language"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("identity: [unclosed", "invalid YAML at line 1"),
        ("- just\n- a list\n", "YAML mapping, got list"),
        ("", "YAML mapping, got NoneType"),
        ("tone: a\ntone: b\n", "duplicate key 'tone' at line 2"),
    ],
)
def test_malformed_yaml_is_a_spec_error_at_the_root(text: str, message: str) -> None:
    with pytest.raises(PersonaSpecError) as caught:
        load_persona(text)
    assert caught.value.path == "$"
    assert message in caught.value.message


def test_custom_voice_ids_are_accepted() -> None:
    data = minimal()
    data["voice"] = {"name": "voice_1234", "speed": 1.2}
    assert load_persona(dump(data)).voice == Voice(name="voice_1234", speed=1.2)


def test_personality_abbreviations_are_not_sentence_ends() -> None:
    data = minimal()
    data["personality"] = "a calm teacher who explains tools, e.g. pivot tables, in plain words."
    assert load_persona(dump(data)).personality.endswith("plain words.")
