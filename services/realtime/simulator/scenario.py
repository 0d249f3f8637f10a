"""Scenario files: what the simulated model says and does, turn by turn.

A scenario is YAML, checked against `SCENARIO_SCHEMA` (JSON Schema) before use, so a typo in a
test scenario fails at load time with the path to the mistake instead of producing a silently
different conversation. Responses are consumed in order, one per `response.create` (or per
automatic response), across every connection to the same simulator, so a conversation that
survives a reconnect continues the script.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from services.realtime.simulator.voice import SpokenAudio, synthesize_utterance

__all__ = [
    "SCENARIO_SCHEMA",
    "FunctionCallSpec",
    "Pacing",
    "ResponseSpec",
    "Scenario",
    "ScenarioError",
    "SessionSpec",
    "builtin_scenario_names",
    "load_builtin_scenario",
    "load_scenario",
]

Pacing = Literal["realtime", "fast"]
CallPlacement = Literal["after_audio", "mid_audio"]

_FUNCTION_CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"},
        "arguments": {
            "description": "JSON object the model passes; serialised compactly.",
            "type": "object",
        },
        "arguments_raw": {
            "description": "Arguments text exactly as streamed, for malformed-JSON cases.",
            "type": "string",
        },
        "at": {"enum": ["after_audio", "mid_audio"], "default": "after_audio"},
        "fraction": {
            "description": "For mid_audio: how far into the audio the call is emitted.",
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
        },
        "call_id": {"type": "string", "minLength": 1},
    },
    "not": {"required": ["arguments", "arguments_raw"]},
    "if": {"properties": {"at": {"const": "mid_audio"}}, "required": ["at"]},
    "then": {"required": ["fraction"]},
    "else": {"not": {"required": ["fraction"]}},
}

_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "label": {"type": "string"},
        "say": {
            "description": "What the assistant speaks; null or absent for a tool-only response.",
            "type": ["string", "null"],
            "pattern": "\\S",
        },
        "function_calls": {"type": "array", "items": _FUNCTION_CALL_SCHEMA, "maxItems": 8},
        "audio_delay_ms": {
            "description": "Time before the first audio delta (model latency); always honoured.",
            "type": "integer",
            "minimum": 0,
        },
        "linger_ms": {
            "description": "Time the response stays active before response.done; always honoured.",
            "type": "integer",
            "minimum": 0,
        },
        "drop_at_fraction": {
            "description": "Drop the socket this far into this response's audio.",
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
        },
    },
    "anyOf": [
        {"required": ["say"], "properties": {"say": {"type": "string"}}},
        {"required": ["function_calls"], "properties": {"function_calls": {"minItems": 1}}},
    ],
}

SCENARIO_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Earpiece Realtime simulator scenario",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "responses"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "session": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "lifetime_s": {
                    "description": "Seconds after connecting before error session_expired.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                },
                "drop_after_responses": {
                    "description": "Drop the socket right after this many responses are done.",
                    "type": ["integer", "null"],
                    "minimum": 1,
                },
                "pacing": {"enum": ["realtime", "fast"]},
                "generation_speed": {
                    "description": "With realtime pacing: audio generated per second of wall time.",
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 100,
                },
                "audio_delta_ms": {
                    "description": "Audio per delta: a fixed size or [min, max].",
                    "oneOf": [
                        {"type": "integer", "minimum": 10, "maximum": 1000},
                        {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 10, "maximum": 1000},
                            "minItems": 2,
                            "maxItems": 2,
                        },
                    ],
                },
                "force_create_response": {
                    "description": "Start a response on every VAD commit even when the session "
                    "says create_response false (provokes the active-response race).",
                    "type": "boolean",
                },
                "voice_pitch_hz": {"type": "number", "minimum": 60, "maximum": 400},
                "id_seed": {
                    "description": "Seed for ids, for byte-reproducible runs.",
                    "type": ["integer", "null"],
                },
            },
        },
        "user_utterances": {
            "description": "What the user says, in order: the transcript of each committed "
            "input audio, and the lines a driver speaks into the VAD.",
            "type": "array",
            "items": {"type": "string", "pattern": "\\S"},
        },
        "responses": {"type": "array", "items": _RESPONSE_SCHEMA},
        "fallback": {**_RESPONSE_SCHEMA, "description": "Said once the responses run out."},
    },
}


class ScenarioError(ValueError):
    """A scenario file that does not match the schema or cannot be read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallSpec:
    name: str
    arguments: str
    at: CallPlacement = "after_audio"
    fraction: float | None = None
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseSpec:
    say: str | None = None
    function_calls: tuple[FunctionCallSpec, ...] = ()
    audio_delay_ms: int = 0
    linger_ms: int = 0
    drop_at_fraction: float | None = None
    label: str | None = None

    @property
    def tool_only(self) -> bool:
        return self.say is None

    def spoken(self, *, pitch_hz: float) -> SpokenAudio | None:
        return None if self.say is None else synthesize_utterance(self.say, pitch_hz=pitch_hz)


_DEFAULT_FALLBACK = ResponseSpec(say="Let's continue.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSpec:
    lifetime_s: float = 3600.0
    drop_after_responses: int | None = None
    pacing: Pacing = "realtime"
    generation_speed: float = 1.0
    audio_delta_ms: tuple[int, int] = (20, 100)
    force_create_response: bool = False
    voice_pitch_hz: float = 190.0
    id_seed: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str = ""
    session: SessionSpec = field(default_factory=SessionSpec)
    user_utterances: tuple[str, ...] = ()
    responses: tuple[ResponseSpec, ...] = ()
    fallback: ResponseSpec = _DEFAULT_FALLBACK

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<scenario>") -> Scenario:
        """Validate against the schema, then build. `source` names the file in errors."""
        validator = jsonschema.Draft202012Validator(SCENARIO_SCHEMA)
        problems = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if problems:
            details = "; ".join(
                f"{'/'.join(str(p) for p in problem.absolute_path) or '<root>'}: {problem.message}"
                for problem in problems[:5]
            )
            raise ScenarioError(f"{source}: invalid scenario: {details}")
        session_data = dict(data.get("session") or {})
        delta = session_data.pop("audio_delta_ms", None)
        if delta is not None:
            low, high = (delta, delta) if isinstance(delta, int) else (delta[0], delta[1])
            if low > high:
                raise ScenarioError(f"{source}: session/audio_delta_ms: min {low} > max {high}")
            session_data["audio_delta_ms"] = (low, high)
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            session=SessionSpec(**session_data),
            user_utterances=tuple(data.get("user_utterances", ())),
            responses=tuple(_response_from(r) for r in data["responses"]),
            fallback=_response_from(data["fallback"]) if "fallback" in data else _DEFAULT_FALLBACK,
        )

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<scenario>") -> Scenario:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ScenarioError(f"{source}: a scenario is a YAML mapping")
        return cls.from_dict(data, source=source)

    def response_at(self, index: int) -> ResponseSpec:
        """The `index`-th response (0-based) of the script, or the fallback past its end."""
        return self.responses[index] if index < len(self.responses) else self.fallback


def _response_from(data: Mapping[str, Any]) -> ResponseSpec:
    return ResponseSpec(
        say=data.get("say"),
        function_calls=tuple(_call_from(call) for call in data.get("function_calls", ())),
        audio_delay_ms=data.get("audio_delay_ms", 0),
        linger_ms=data.get("linger_ms", 0),
        drop_at_fraction=data.get("drop_at_fraction"),
        label=data.get("label"),
    )


def _call_from(data: Mapping[str, Any]) -> FunctionCallSpec:
    if "arguments_raw" in data:
        arguments = data["arguments_raw"]
    else:
        arguments = json.dumps(data.get("arguments", {}), separators=(",", ":"))
    return FunctionCallSpec(
        name=data["name"],
        arguments=arguments,
        at=data.get("at", "after_audio"),
        fraction=data.get("fraction"),
        call_id=data.get("call_id"),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario file, or a built-in scenario by name (e.g. `tutoring`)."""
    candidate = Path(path)
    if not candidate.exists() and str(path) in builtin_scenario_names():
        return load_builtin_scenario(str(path))
    try:
        text = candidate.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror}") from exc
    return Scenario.from_yaml(text, source=str(path))


def builtin_scenario_names() -> list[str]:
    folder = resources.files("services.realtime.simulator.scenarios")
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_builtin_scenario(name: str) -> Scenario:
    entry = resources.files("services.realtime.simulator.scenarios").joinpath(f"{name}.yaml")
    if not entry.is_file():
        raise ScenarioError(f"no built-in scenario named {name!r}")
    return Scenario.from_yaml(entry.read_text(encoding="utf-8"), source=f"scenarios/{name}.yaml")
