"""Compile a persona spec into Realtime session instructions.

The output is written to be read aloud as a briefing about a person, in second person and
imperative present tense ("You are…", "When the user…, you…"), because the model carries
the instructions as an identity for the whole session and a memo drifts. It always carries
the voice-first framing (unless the spec switches it off), the sentence-before-tools rule
whenever tools are configured, and the ``Context update:`` convention the gateway relies on.
The same spec always compiles to the same text, so its hash identifies a prompt in replays.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.prompts.spec import PersonaSpec

__all__ = [
    "CONTEXT_UPDATE_PREFIX",
    "CONTEXT_UPDATE_RULE",
    "TOOL_ORDER_RULE",
    "CompiledPersona",
    "compile_persona",
    "prompt_hash",
    "voice_first_sentence",
]

CONTEXT_UPDATE_PREFIX = "Context update:"

TOOL_ORDER_RULE = (
    "Always finish your current sentence before you call a tool, "
    "and never call a tool in the middle of speaking."
)

CONTEXT_UPDATE_RULE = (
    f'A user message that begins with "{CONTEXT_UPDATE_PREFIX}" is the current state of the '
    "user's screen, sent by the app, not a question to answer. You never reply to it or read "
    "it out; you use it silently, and the newest one replaces whatever you knew about the "
    "screen before."
)


def voice_first_sentence(*, max_sentences: int) -> str:
    """The framing from the field notes that halves verbosity in spoken sessions."""
    length = "in one sentence" if max_sentences == 1 else f"in 1-{max_sentences} sentences"
    return (
        "You are talking out loud, not writing, so respond conversationally, "
        f"{length}, like you're sitting next to the user."
    )


def prompt_hash(instructions: str) -> str:
    """sha256 hex digest of the exact instructions text, recorded with each session."""
    return hashlib.sha256(instructions.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CompiledPersona:
    """A spec and the instructions compiled from it; the hash names this exact text."""

    spec: PersonaSpec
    instructions: str
    prompt_hash: str

    @property
    def persona_name(self) -> str:
        return self.spec.identity.name

    @property
    def voice(self) -> str:
        return self.spec.voice.name

    @property
    def speed(self) -> float:
        return self.spec.voice.speed

    @property
    def tools(self) -> tuple[str, ...]:
        return self.spec.tool_names


# Words that open a situation but are never names, so they can be lower-cased mid-sentence.
_FUNCTION_WORD = re.compile(
    r"^(?:A|An|The|They|Their|Your|It|Its|There|Someone|Anyone|Nobody|This|That|These|Those|"
    r"He|She|We|Our|Any|Each|Every|No)\b"
)
_TITLE_WORD = re.compile(r"^[A-Z][a-z'\u2019-]*\b")
_LEADING_CONDITION = re.compile(r"^(?:when(?:ever)?|if|once|as soon as)\s+", re.IGNORECASE)
_LEADING_YOU_ARE = re.compile(r"^(?:you\s+are|you're|you\u2019re)\s+", re.IGNORECASE)


def _lower_first(text: str, *, verbs: bool) -> str:
    """Lower-case a leading capital so a fragment can continue a sentence ("Give" → "give").

    Fragments that start with a verb or adjective (do-clauses, tone) lose any Title-case first
    letter; situations keep theirs unless it is a function word, since they may open with a
    name ("Figma shows an error").
    """
    pattern = _TITLE_WORD if verbs else _FUNCTION_WORD
    if pattern.match(text) and not re.match(r"^I\b", text):
        return text[0].lower() + text[1:]
    return text


def _fragment(text: str) -> str:
    """Trim a spec fragment so it can be embedded in a sentence."""
    return text.strip().rstrip(".;,").rstrip()


def _you_clause(text: str) -> str:
    """Normalise "go back a step" / "You go back a step" to "you go back a step"."""
    body = _fragment(text)
    if re.match(r"^you\b", body, re.IGNORECASE):
        return "you" + body[3:]
    return "you " + _lower_first(body, verbs=True)


def _situation(text: str) -> str:
    """Normalise "When the user asks for steps," to "the user asks for steps"."""
    return _lower_first(_LEADING_CONDITION.sub("", _fragment(text)), verbs=False)


def _sentence(text: str) -> str:
    """Capitalise and end with a full stop, leaving existing ! or ? alone."""
    body = text.strip()
    if not body:
        return body
    body = body[0].upper() + body[1:]
    return body if body[-1] in ".!?" else body + "."


def _identity(spec: PersonaSpec) -> str:
    personality = _lower_first(_LEADING_YOU_ARE.sub("", _fragment(spec.personality)), verbs=False)
    return (
        f"You are {spec.identity.name}, {_fragment(spec.identity.role)}. "
        f"Above all, you are {personality}."
    )


def _speech(spec: PersonaSpec) -> str:
    sentences = [f"You speak {_fragment(spec.language)}."]
    if spec.pacing.voice_first:
        sentences.append(voice_first_sentence(max_sentences=spec.pacing.max_sentences))
        sentences.append(
            "You say one thing at a time, then stop and let the user answer. "
            "You never use headings, bullet points, tables or markdown, because everything "
            "you say is heard, not read."
        )
    if spec.pacing.style:
        sentences.append(_sentence(_you_clause(spec.pacing.style)))
    return " ".join(sentences)


def _manner(spec: PersonaSpec) -> str:
    tone = re.sub(r"^your\s+tone\s+is\s+", "", _fragment(spec.tone), flags=re.IGNORECASE)
    tone = _lower_first(tone, verbs=True)
    return (
        f"Your tone is {tone}. "
        f"When the user is confused, {_you_clause(spec.confusion)}. "
        f"When the user goes off topic, {_you_clause(spec.off_topic)}."
    )


def _rules(spec: PersonaSpec) -> str:
    return "\n".join(
        f"When {_situation(rule.when)}, {_you_clause(rule.do)}." for rule in spec.rules
    )


def _tools(tools: Sequence[tuple[str, str]]) -> str:
    lines = [TOOL_ORDER_RULE]
    lines += [f"You call {name} when {_situation(when)}." for name, when in tools]
    if tools:
        lines.append("You call no other tools.")
    return "\n".join(lines)


def compile_persona(spec: PersonaSpec, *, session_tools: Sequence[str] = ()) -> CompiledPersona:
    """Compile a spec into deterministic, briefing-shaped instructions and their hash.

    ``session_tools`` are the tools the session actually configures: when there are any, the
    sentence-before-tools rule is compiled in even if the persona lists no tools of its own,
    because a mid-sentence tool call is a glitch whichever tool it is.
    """
    paragraphs = [_identity(spec), _speech(spec), _manner(spec), _rules(spec)]
    if spec.tools or session_tools:
        paragraphs.append(_tools([(tool.name, tool.when) for tool in spec.tools]))
    paragraphs.append(CONTEXT_UPDATE_RULE)
    paragraphs.append(
        f"You stay {spec.identity.name} for the whole session, and everything above holds "
        "from the first minute to the last."
    )
    instructions = "\n\n".join(paragraphs)
    return CompiledPersona(
        spec=spec, instructions=instructions, prompt_hash=prompt_hash(instructions)
    )
