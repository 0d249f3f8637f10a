"""The linter's vocabulary: rule ids, severities, and the Finding every check returns.

Rule ids are an API (gRPC error details, ``--json``, recorded warning events), so they live
in one table that every check module shares; renaming one is a breaking change, adding one is
not. Checks build findings only through :func:`make_finding`, so each one carries the rule's
title, why it matters in a Realtime session, its line and a rewrite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from services.prompts.shapes import clip

__all__ = [
    "BULLET_RUN_LIMIT",
    "MIN_BRIEFING_WORDS",
    "RULES",
    "Finding",
    "RuleInfo",
    "Severity",
    "make_finding",
]

# A briefing must at least cover who the persona is, tone, pacing, confusion, off-topic and a
# couple of "When the user …, you …" rules: about six essentials of one imperative sentence
# (~20 words) each. Below 120 words something on that list is missing, and in Realtime
# whatever the briefing leaves out the model improvises for the whole session.
MIN_BRIEFING_WORDS = 120

# Six short bullets can still be one spoken thought; seven or more in a row reads as a memo.
BULLET_RUN_LIMIT = 6


class Severity(StrEnum):
    """Errors reject a prompt; warnings are reported and recorded but let the session start."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A lint rule's stable id, severity, and why it matters in a Realtime session."""

    id: str
    severity: Severity
    title: str
    why: str


_FEW_SHOT_WHY = (
    "Realtime takes example turns in the instructions for real conversation turns, so the "
    "model loses track of where the conversation actually started; a rule generalises where "
    "an example gets replayed."
)
_MEMO_WHY = (
    "The instructions are a briefing the model carries as a spoken personality, and a prompt "
    "that reads like a memo performs like one: it pulls the model toward structured text that "
    "sounds robotic aloud."
)

RULES: dict[str, RuleInfo] = {
    info.id: info
    for info in (
        RuleInfo(
            "few-shot-example-turn",
            Severity.ERROR,
            'labelled example turn ("Example user: …", "Example AI: …")',
            _FEW_SHOT_WHY,
        ),
        RuleInfo(
            "few-shot-dialogue",
            Severity.ERROR,
            "example dialogue: two or more voices taking turns, in any labels, language or markup",
            _FEW_SHOT_WHY,
        ),
        RuleInfo("few-shot-qa", Severity.ERROR, 'Q:/A: example pair ("Q: … A: …")', _FEW_SHOT_WHY),
        RuleInfo(
            "few-shot-says",
            Severity.ERROR,
            "scripted reply (\"user says … → you say …\", \"if the user says 'x', say 'y'\")",
            _FEW_SHOT_WHY,
        ),
        RuleInfo(
            "few-shot-quoted-exchange",
            Severity.ERROR,
            'quoted exchange ("…" — "…")',
            _FEW_SHOT_WHY,
        ),
        RuleInfo(
            "hedge",
            Severity.WARNING,
            "hedged instruction",
            "The model reads a hedge such as “typically” as a hint, not a rule, and ignores "
            "it about half the time over a long session.",
        ),
        RuleInfo(
            "hedge-language-unsupported",
            Severity.WARNING,
            "no hedge list for the prompt's language",
            "A hedge such as “typically” is read as a hint and ignored about half the time, in "
            "any language; without a list for this one, its hedges were not checked at all.",
        ),
        RuleInfo(
            "no-voice-first",
            Severity.WARNING,
            "no voice-first framing",
            "Without voice-first framing the model falls back to its multi-paragraph text "
            "style, which sounds robotic aloud; the framing cuts verbosity by about half.",
        ),
        RuleInfo(
            "no-tool-ordering",
            Severity.WARNING,
            "tools configured but no rule to finish the sentence first",
            "A tool call made mid-sentence cuts the audio off and sounds like a glitch; a "
            "plain ordering rule removes about 80% of those cuts.",
        ),
        RuleInfo("memo-heading", Severity.WARNING, "markdown heading", _MEMO_WHY),
        RuleInfo("memo-table", Severity.WARNING, "markdown table", _MEMO_WHY),
        RuleInfo(
            "memo-bullets",
            Severity.WARNING,
            f"long bullet list (more than {BULLET_RUN_LIMIT} in a row)",
            _MEMO_WHY,
        ),
        RuleInfo(
            "tool-not-configured",
            Severity.WARNING,
            "the persona tells the model to call a tool the session does not configure",
            "A briefing is the model's whole plan for the session, so a tool it is told to "
            "call but cannot reach leaves it stuck mid-task with no way to correct course.",
        ),
        RuleInfo(
            "tool-not-described",
            Severity.WARNING,
            "the session configures a tool the instructions never mention",
            "Anything the briefing leaves out the model improvises for the whole session, "
            "including when to call a tool it was never told about.",
        ),
        RuleInfo(
            "too-short",
            Severity.WARNING,
            f"too short to be a full briefing (under {MIN_BRIEFING_WORDS} words)",
            "A live session has no turn to inject corrections into, so whatever the briefing "
            "leaves out the model improvises for the whole session; a denser spec outperforms "
            "a minimal one.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint result, with enough context to fix the prompt without reading the notes."""

    severity: Severity
    rule: str
    line: int
    excerpt: str
    message: str
    why: str
    rewrite: str

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able form, for the CLI's --json and for gRPC error details."""
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


def make_finding(rule: str, *, line: int, excerpt: str, rewrite: str, detail: str = "") -> Finding:
    """A finding for ``rule``; ``detail`` follows the rule's title in the message."""
    info = RULES[rule]
    message = info.title + (f": {detail}" if detail else "")
    return Finding(
        severity=info.severity,
        rule=rule,
        line=line,
        excerpt=clip(excerpt),
        message=message,
        why=info.why,
        rewrite=rewrite,
    )
