"""The structural dialogue detector: what it reads as turns, and the rule it derives."""

from __future__ import annotations

import pytest

from services.prompts.dialogue import behaviour_rewrite, find_dialogues


def only(text: str) -> str:
    found = find_dialogues(text.splitlines())
    assert len(found) == 1, found
    return behaviour_rewrite(found[0])


def test_short_replies_become_answer_in_one_sentence_then_wait() -> None:
    rewrite = only(
        "Ana: Where is the export button?\nBo: Top right.\nAna: And share?\nBo: Next to it."
    )
    assert rewrite.startswith(
        'Replace the example with a rule: When the user asks something like "Where is the '
        'export button?", you answer in one sentence, then wait'
    )


def test_a_reply_that_asks_back_becomes_ask_one_question_at_a_time() -> None:
    rewrite = only(
        "Kunde: Meine Rechnung ist zu hoch.\nLea: Das tut mir leid. Welcher Monat ist es?\n"
        "Kunde: Der März.\nLea: Danke, ich schaue nach."
    )
    assert "acknowledge the problem in a few words" in rewrite
    assert "ask one question at a time" in rewrite


def test_long_replies_are_capped_in_the_rule() -> None:
    rewrite = only(
        "User: How do I start?\nAssistant: Open the app. Sign in. Pick a file. Press Start.\n"
        "User: Thanks!\nAssistant: Any time. Good luck. Tell me how it goes."
    )
    assert "answer in at most two sentences" in rewrite


def test_a_dialogue_is_reported_once_from_its_first_turn() -> None:
    lines = [
        "Intro line.",
        "",
        "Note: this is a demo.",
        "Maya: Hi, I'm lost!",
        "Leo: Okay.",
        "Maya: Where do I click?",
        "Leo: On Share.",
    ]
    (found,) = find_dialogues(lines)
    assert found.first_line == 3
    assert [t.voice for t in found.turns] == ["maya", "leo", "maya", "leo"]


@pytest.mark.parametrize(
    "text",
    [
        "Owner: can change limits. Member: can add expenses.",
        "Tone: warm. Pacing: slow.",
        "Name: Maya\nRole: tutor\nName: Leo\nRole: coach",
        "Do: Keep answers short.\nDon't: Read lists aloud.\nDo: Wait.\nDon't: Use jargon.",
        "When the customer says they want a refund, you say you are sorry and offer two options.",
        'Users ask things like "Where is my invoice?" or "Can I pay later?"; you point at it.',
        '{"name": "lookup_invoice", "description": "Finds an invoice."}, '
        '{"name": "resend_invoice", "description": "Sends a copy."}',
    ],
)
def test_label_like_lines_that_are_not_dialogues(text: str) -> None:
    assert find_dialogues(text.splitlines()) == []
