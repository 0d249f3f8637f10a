"""Which hedge list a prompt gets: the persona's declared language, else the detected one."""

from __future__ import annotations

import pytest

from services.prompts import lint_prompt, prepare_prompt
from services.prompts.hedges import (
    detect_language,
    hedge_patterns,
    language_from_declared,
    rewrite_without_hedges,
)
from tests.prompts.test_spec import dump, minimal


@pytest.mark.parametrize(
    ("declared", "code"),
    [
        ("English", "en"),
        ("Spanish, with short English explanations when a beginner is stuck", "es"),
        ("español", "es"),
        ("fr", "fr"),
        ("pt-BR", "pt"),
        ("Français (Canada)", "fr"),
        ("Deutsch, per Sie", "de"),
        ("日本語", "ja"),
        ("Klingon", None),
    ],
)
def test_declared_language_is_read_by_name_or_code(declared: str, code: str | None) -> None:
    language = language_from_declared(declared)
    assert language.code == code
    assert language.source == "declared"


@pytest.mark.parametrize(
    ("text", "code", "source"),
    [
        (
            "Eres Lucía. Cuando el usuario se equivoca, repites la frase y sigues con calma.",
            "es",
            "detected",
        ),
        (
            "Tu es Camille. Quand le client est perdu, tu reformules et tu attends.",
            "fr",
            "detected",
        ),
        (
            "Du bist Lea. Wenn die Person nicht weiterkommt, erklärst du es noch einmal.",
            "de",
            "detected",
        ),
        ("You are Nora. When the user is lost, you go back one step and wait.", "en", "detected"),
        ("Nora. Lucía. Lea.", "en", "default"),
        ("あなたはノラです。ユーザーが迷ったら、一歩戻って待ちます。", None, "detected"),
    ],
)
def test_raw_text_language_is_detected_or_defaults_to_english(
    text: str, code: str | None, source: str
) -> None:
    language = detect_language(text)
    assert (language.code, language.source) == (code, source)


def test_the_declared_language_decides_the_list() -> None:
    text = "Normalmente respondes en una frase, y quizás propones un ejercicio."
    assert [f.rule for f in lint_prompt(text, tools_configured=False, language="English")] == [
        "no-voice-first",
        "too-short",
    ]
    hedges = [f for f in lint_prompt(text, tools_configured=False, language="Spanish")]
    assert [f.rule for f in hedges if f.rule == "hedge"] == ["hedge"]


def test_english_hedges_are_checked_whatever_the_language() -> None:
    """A compiled persona's frame is English, so its hedges count in a Spanish persona too."""
    text = "You should usually answer in Spanish."
    rules = {f.rule for f in lint_prompt(text, tools_configured=False, language="es")}
    assert "hedge" in rules


def test_a_language_without_a_list_is_reported_not_passed() -> None:
    findings = lint_prompt("Parli sempre piano.", tools_configured=False, language="Italian")
    unsupported = [f for f in findings if f.rule == "hedge-language-unsupported"]
    assert len(unsupported) == 1
    assert "Italian (declared)" in unsupported[0].message
    assert unsupported[0].severity.value == "warning"


@pytest.mark.parametrize(
    ("sentence", "languages", "rewrite"),
    [
        ("Intenta hablar despacio si es posible.", ("en", "es"), "Hablar despacio."),
        ("El asistente intenta ser breve.", ("en", "es"), "El asistente debe ser breve."),
        ("Tu essaies de répondre brièvement.", ("en", "fr"), "Tu dois répondre brièvement."),
        ("Essayez de parler lentement, si possible.", ("en", "fr"), "Parler lentement."),
        ("Normalerweise antwortest du kurz.", ("en", "de"), "Du antwortest kurz."),
        ("Du versuchst, möglichst kurz zu antworten.", ("en", "de"), "Du musst kurz antworten."),
    ],
)
def test_rewrites_drop_the_hedge_in_its_language(
    sentence: str, languages: tuple[str, ...], rewrite: str
) -> None:
    assert rewrite_without_hedges(sentence, languages) == rewrite
    assert not any(pattern.search(rewrite) for pattern in hedge_patterns())


def test_a_persona_declaring_spanish_gets_spanish_hedges_through_prepare() -> None:
    spec = minimal()
    spec["language"] = "Spanish"
    spec["rules"] = [{"when": "the user is stuck", "do": "dices normalmente la respuesta"}]
    prepared = prepare_prompt(persona_yaml=dump(spec), instructions=None, tools=[])
    assert [f.rule for f in prepared.warnings if f.rule.startswith("hedge")] == ["hedge"]


def test_a_persona_declaring_an_unlisted_language_is_warned_through_prepare() -> None:
    spec = minimal()
    spec["language"] = "Italian"
    prepared = prepare_prompt(persona_yaml=dump(spec), instructions=None, tools=[])
    assert "hedge-language-unsupported" in {f.rule for f in prepared.warnings}
