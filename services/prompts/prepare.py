"""Turn a StartSession request's prompt (a persona spec or raw instructions) into the exact
instructions a session runs with, or refuse it.

This is the one place the gateway calls: lint errors reject the session before any audio
flows, because a live Realtime session cannot be corrected once it has started; warnings
travel with the session so they are returned to the caller and recorded as an event.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.prompts.compiler import compile_persona, prompt_hash
from services.prompts.linter import RULES, Finding, Severity, lint_prompt
from services.prompts.spec import PromptError, load_persona

__all__ = ["PreparedPrompt", "PromptRejected", "PromptSourceError", "prepare_prompt"]


class PromptRejected(PromptError):
    """The prompt has lint errors; ``findings`` holds every finding, errors first."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = sorted(findings, key=lambda f: (f.severity != Severity.ERROR, f.line))
        errors = self.errors
        first = errors[0] if errors else None
        summary = f"{len(errors)} lint error(s)"
        if first is not None:
            summary += f"; first at line {first.line}: {first.rule}: {first.message}"
        super().__init__(summary)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR]


class PromptSourceError(PromptError):
    """Neither or both of persona_yaml and instructions were given."""


@dataclass(frozen=True)
class PreparedPrompt:
    """What a session starts with; ``prompt_hash`` is recorded so replays name the prompt."""

    instructions: str
    prompt_hash: str
    voice: str | None
    speed: float | None
    persona_name: str | None
    warnings: list[Finding] = field(default_factory=list)


def _given(text: str | None) -> bool:
    # Protobuf leaves unset string fields empty, so blank counts as absent.
    return text is not None and bool(text.strip())


def _line_of(instructions: str, needle: str) -> tuple[int, str]:
    for number, line in enumerate(instructions.splitlines(), start=1):
        if needle in line:
            return number, line
    return 1, ""


def _tool_findings(
    instructions: str, *, session_tools: Sequence[str], persona_tools: Sequence[str] | None
) -> list[Finding]:
    """Tools the briefing and the session disagree about."""
    findings: list[Finding] = []
    if persona_tools is not None:
        for name in persona_tools:
            if name not in session_tools:
                line, text = _line_of(instructions, f"You call {name} ")
                info = RULES["tool-not-configured"]
                findings.append(
                    Finding(
                        severity=info.severity,
                        rule=info.id,
                        line=line,
                        excerpt=text,
                        message=f"{info.title}: {name}",
                        why=info.why,
                        rewrite=(
                            f"Configure {name} for the session, or remove it from the "
                            "persona's tools."
                        ),
                    )
                )
    for name in session_tools:
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", instructions):
            info = RULES["tool-not-described"]
            findings.append(
                Finding(
                    severity=info.severity,
                    rule=info.id,
                    line=1,
                    excerpt="",
                    message=f"{info.title}: {name}",
                    why=info.why,
                    rewrite=f'Add a rule: "You call {name} when the user …".',
                )
            )
    return findings


def prepare_prompt(
    *, persona_yaml: str | None, instructions: str | None, tools: Sequence[str]
) -> PreparedPrompt:
    """Compile or take the instructions, lint them, and return them with hash and warnings.

    Exactly one of ``persona_yaml`` and ``instructions`` must be non-blank. ``tools`` are the
    names of the tools the session configures. A persona's declared ``language`` picks the
    hedge list; raw instructions declare none, so theirs is detected from the text. Raises
    PersonaSpecError for an invalid spec, PromptRejected when lint finds errors,
    PromptSourceError for neither/both; all three are PromptError.
    """
    has_persona, has_instructions = _given(persona_yaml), _given(instructions)
    if has_persona == has_instructions:
        raise PromptSourceError(
            "give exactly one of a persona spec or raw instructions"
            + (" (got both)" if has_persona else " (got neither)")
        )
    session_tools = list(dict.fromkeys(tools))
    if has_persona:
        assert persona_yaml is not None
        spec = load_persona(persona_yaml)
        compiled = compile_persona(spec, session_tools=session_tools)
        text = compiled.instructions
        voice: str | None = compiled.voice
        speed: float | None = compiled.speed
        name: str | None = compiled.persona_name
        persona_tools: Sequence[str] | None = compiled.tools
        language: str | None = spec.language
    else:
        assert instructions is not None
        text = instructions
        voice = speed = name = persona_tools = language = None
    findings = lint_prompt(text, tools_configured=bool(session_tools), language=language)
    findings += _tool_findings(text, session_tools=session_tools, persona_tools=persona_tools)
    if any(f.severity == Severity.ERROR for f in findings):
        raise PromptRejected(findings)
    return PreparedPrompt(
        instructions=text,
        prompt_hash=prompt_hash(text),
        voice=voice,
        speed=speed,
        persona_name=name,
        warnings=sorted(findings, key=lambda f: (f.line, f.rule)),
    )
