"""Persona briefings for Realtime sessions: spec → compiled instructions, and the prompt linter.

A Realtime system prompt is the whole personality for a live session with no turn to correct
it in, so Earpiece compiles personas into full briefings and lints every prompt before a
session starts. The gateway calls :func:`prepare_prompt`; the CLI registers
:func:`add_prompt_cli`.
"""

from services.prompts.cli import add_prompt_cli
from services.prompts.compiler import (
    CONTEXT_UPDATE_PREFIX,
    CONTEXT_UPDATE_RULE,
    TOOL_ORDER_RULE,
    CompiledPersona,
    compile_persona,
    prompt_hash,
)
from services.prompts.linter import RULES, Finding, RuleInfo, Severity, lint_prompt
from services.prompts.prepare import (
    PreparedPrompt,
    PromptRejected,
    PromptSourceError,
    prepare_prompt,
)
from services.prompts.spec import (
    BehaviourRule,
    Identity,
    Pacing,
    PersonaSpec,
    PersonaSpecError,
    PromptError,
    SpecProblem,
    ToolUse,
    Voice,
    load_persona,
    persona_schema,
)

__all__ = [
    "CONTEXT_UPDATE_PREFIX",
    "CONTEXT_UPDATE_RULE",
    "RULES",
    "TOOL_ORDER_RULE",
    "BehaviourRule",
    "CompiledPersona",
    "Finding",
    "Identity",
    "Pacing",
    "PersonaSpec",
    "PersonaSpecError",
    "PreparedPrompt",
    "PromptError",
    "PromptRejected",
    "PromptSourceError",
    "RuleInfo",
    "Severity",
    "SpecProblem",
    "ToolUse",
    "Voice",
    "add_prompt_cli",
    "compile_persona",
    "lint_prompt",
    "load_persona",
    "persona_schema",
    "prepare_prompt",
    "prompt_hash",
]
