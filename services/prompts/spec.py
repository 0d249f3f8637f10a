"""The persona spec: YAML in, typed and validated dataclasses out.

A Realtime session cannot be corrected once it is streaming, so a persona is checked before a
session starts: the YAML must parse, must match ``persona.schema.json``, and must pass the few
checks a schema cannot express (one-sentence personality, unique tool names). Every failure
names the field path, so the author knows exactly which line of the spec to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

__all__ = [
    "BehaviourRule",
    "Identity",
    "Pacing",
    "PersonaSpec",
    "PersonaSpecError",
    "PromptError",
    "SpecProblem",
    "ToolUse",
    "Voice",
    "load_persona",
    "persona_schema",
]

SCHEMA_RESOURCE = "persona.schema.json"


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One thing wrong with a spec, at a JSONPath such as ``$.rules[2].do``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PromptError(ValueError):
    """Base for every reason a prompt cannot start a session (maps to INVALID_ARGUMENT)."""


class PersonaSpecError(PromptError):
    """The persona YAML is not a valid spec; ``path`` names the (first) offending field."""

    def __init__(self, message: str, path: str, *, problems: tuple[SpecProblem, ...] = ()) -> None:
        super().__init__(f"{path}: {message}")
        self.message = message
        self.path = path
        self.problems = problems or (SpecProblem(path=path, message=message),)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the persona is: a name and a role (a noun phrase completing "You are <name>, …")."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class Voice:
    """Session audio settings; they anchor the persona as much as the words do."""

    name: str
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class Pacing:
    """Length and rhythm of spoken turns; voice-first framing is on unless switched off."""

    voice_first: bool = True
    max_sentences: int = 2
    style: str | None = None


@dataclass(frozen=True, slots=True)
class BehaviourRule:
    """A rule in the shape the field notes recommend: when the user does X, you do Y."""

    when: str
    do: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A tool the persona may call, and the situation that calls for it."""

    name: str
    when: str


@dataclass(frozen=True, slots=True)
class PersonaSpec:
    """A parsed, validated persona: everything the model carries for the whole session."""

    identity: Identity
    personality: str
    voice: Voice
    tone: str
    pacing: Pacing
    confusion: str
    off_topic: str
    rules: tuple[BehaviourRule, ...]
    tools: tuple[ToolUse, ...]
    language: str

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(tool.name for tool in self.tools)


@cache
def persona_schema() -> dict[str, Any]:
    """The JSON schema shipped beside this module (cached; it never changes at run time)."""
    text = resources.files("services.prompts").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = persona_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would otherwise drop silently."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise PersonaSpecError(
                f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}",
                "$",
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_TYPE_NAMES = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def _describe(error: jsonschema.ValidationError) -> SpecProblem:
    """Turn one jsonschema error into a message that names the field and says what is wanted."""
    path = _path(error.absolute_path)
    validator = error.validator
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    if validator == "required":
        missing = re.search(r"'([^']+)' is a required property", error.message)
        name = missing.group(1) if missing else "?"
        return SpecProblem(path=f"{path}.{name}", message="required field is missing")
    if validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = re.findall(r"'([^']+)'", error.message.split("(")[-1])
        extra = extras[0] if extras else "?"
        return SpecProblem(
            path=f"{path}.{extra}",
            message=f"unknown field (allowed here: {', '.join(allowed)})",
        )
    if validator == "type":
        wanted = _TYPE_NAMES.get(str(error.validator_value), str(error.validator_value))
        return SpecProblem(path=path, message=f"must be {wanted}, got {error.instance!r}")
    if validator == "anyOf" and path.endswith(".voice.name"):
        voices = schema["anyOf"][0]["enum"]
        return SpecProblem(
            path=path,
            message=(
                f"unknown voice {error.instance!r} (use one of {', '.join(voices)}, "
                "or a custom voice id beginning voice_)"
            ),
        )
    if validator == "pattern" and error.validator_value == "\\S":
        return SpecProblem(path=path, message="must not be blank")
    if validator == "pattern":
        return SpecProblem(
            path=path,
            message=f"{error.instance!r} must match {error.validator_value!r}",
        )
    if validator in {"minLength", "maxLength", "minimum", "maximum", "minItems"}:
        limit = error.validator_value
        what = {
            "minLength": f"at least {limit} characters",
            "maxLength": f"at most {limit} characters",
            "minimum": f"at least {limit}",
            "maximum": f"at most {limit}",
            "minItems": f"at least {limit} item(s)",
        }[str(validator)]
        return SpecProblem(path=path, message=f"must be {what}")
    if validator == "const":
        return SpecProblem(path=path, message=f"must be {error.validator_value!r}")
    return SpecProblem(path=path, message=error.message)


_SENTENCE_END = re.compile(r"[.!?](?:\s+|$)")


def _extra_problems(data: Mapping[str, Any]) -> list[SpecProblem]:
    """Checks the schema cannot express."""
    problems: list[SpecProblem] = []
    personality = _clean(data["personality"])
    # "e.g." and "i.e." are not sentence ends; any other terminator before the last is.
    body = re.sub(r"\b(?:e\.g|i\.e|etc|vs|Dr|Mr|Mrs|Ms)\.", "", personality)
    ends = _SENTENCE_END.findall(body.rstrip(".!? "))
    if ends:
        problems.append(
            SpecProblem(
                path="$.personality",
                message=f"must be one sentence (found {len(ends) + 1})",
            )
        )
    seen: dict[str, int] = {}
    for index, tool in enumerate(data.get("tools") or []):
        name = tool["name"]
        if name in seen:
            problems.append(
                SpecProblem(
                    path=f"$.tools[{index}].name",
                    message=f"duplicate tool {name!r} (first at $.tools[{seen[name]}])",
                )
            )
        else:
            seen[name] = index
    return problems


def _clean(text: str) -> str:
    """Collapse YAML folding and stray whitespace, so compiled output is one line per idea."""
    return " ".join(text.split())


def _opt(text: str | None) -> str | None:
    return None if text is None else _clean(text)


def load_persona(yaml_text: str) -> PersonaSpec:
    """Parse and validate persona YAML, raising PersonaSpecError with the field path."""
    try:
        data = yaml.load(yaml_text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PersonaSpecError(f"invalid YAML{where}: {exc.problem}", "$") from exc
    except yaml.YAMLError as exc:
        raise PersonaSpecError(f"invalid YAML: {exc}", "$") from exc
    if not isinstance(data, dict):
        raise PersonaSpecError(f"a persona spec is a YAML mapping, got {type(data).__name__}", "$")
    errors = sorted(
        _validator().iter_errors(data),
        key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)),
    )
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _extra_problems(data)
    if problems:
        first = problems[0]
        message = first.message
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more: " + "; ".join(str(p) for p in problems[1:])
            message += ")"
        raise PersonaSpecError(message, first.path, problems=tuple(problems))
    return _build(data)


def _build(data: Mapping[str, Any]) -> PersonaSpec:
    identity = data["identity"]
    voice = data["voice"]
    pacing = data.get("pacing") or {}
    return PersonaSpec(
        identity=Identity(name=_clean(identity["name"]), role=_clean(identity["role"])),
        personality=_clean(data["personality"]),
        voice=Voice(name=voice["name"], speed=float(voice.get("speed", 1.0))),
        tone=_clean(data["tone"]),
        pacing=Pacing(
            voice_first=bool(pacing.get("voice_first", True)),
            max_sentences=int(pacing.get("max_sentences", 2)),
            style=_opt(pacing.get("style")),
        ),
        confusion=_clean(data["confusion"]),
        off_topic=_clean(data["off_topic"]),
        rules=tuple(
            BehaviourRule(when=_clean(rule["when"]), do=_clean(rule["do"]))
            for rule in data["rules"]
        ),
        tools=tuple(
            ToolUse(name=tool["name"], when=_clean(tool["when"]))
            for tool in data.get("tools") or []
        ),
        language=_clean(data["language"]),
    )
