"""Scenario files: what the simulated model says and does, turn by turn.

A scenario is YAML, checked against `SCENARIO_SCHEMA` (JSON Schema) before use, so a typo in a
test scenario fails at load time with the path to the mistake instead of producing a silently
different conversation. Responses are consumed in order, one per `response.create` (or per
automatic response), across every connection to the same simulator, so a conversation that
survives a reconnect continues the script.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from services.realtime.simulator.voice import SpokenAudio, synthesize_utterance

__all__ = [
    "DEFAULT_GENERATION_SPEED",
    "SCENARIO_SCHEMA",
    "EndingSpec",
    "FunctionCallSpec",
    "Pacing",
    "ResponseSpec",
    "Scenario",
    "ScenarioError",
    "SessionSpec",
    "UserUtterance",
    "builtin_scenario_names",
    "load_builtin_scenario",
    "load_scenario",
]

Pacing = Literal["realtime", "fast"]
CallPlacement = Literal["after_audio", "mid_audio"]
TranscriptionOrder = Literal["seeded", "before_response", "after_response"]
EndingStatus = Literal["incomplete", "failed"]
EndingReason = Literal["max_output_tokens", "content_filter"]

DEFAULT_GENERATION_SPEED: tuple[float, float] = (2.0, 8.0)
"""Realtime pacing's default: each response draws its speed (audio seconds generated per wall
second) from a log-normal spread whose median is the geometric mean of this range (4x), clipped
to it. The real server generates faster than real time, usually by a lot."""
_SPEED_SIGMA = 0.35  # ln-space spread: about 68% of draws within 0.7x..1.42x of the median


def _value_or_range(description: str, **bounds: Any) -> dict[str, Any]:
    """A schema for one value or a [min, max] pair of them, within `bounds`."""
    return {
        "description": description,
        "oneOf": [bounds, {"type": "array", "items": bounds, "minItems": 2, "maxItems": 2}],
    }


_SPEED_SCHEMA = _value_or_range(
    "With realtime pacing: audio generated per second of wall time. A number pins it; "
    "[min, max] draws each response's speed from a seeded log-normal spread.",
    type="number",
    exclusiveMinimum=0,
    maximum=100,
)

_ENDING_SCHEMA: dict[str, Any] = {
    "description": "End this response other than `completed`.",
    "type": "object",
    "additionalProperties": False,
    "required": ["status"],
    "properties": {
        "status": {"enum": ["incomplete", "failed"]},
        "reason": {"enum": ["max_output_tokens", "content_filter"]},
        "at_fraction": {
            "description": "How far into the audio (or text) the response stops; default 0.5.",
            "type": "number",
            "minimum": 0,
            "maximum": 1,
        },
        "error": {
            "description": "For failed: status_details.error.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"},
            },
        },
    },
    "if": {"properties": {"status": {"const": "incomplete"}}},
    "then": {"required": ["reason"], "not": {"required": ["error"]}},
    "else": {"not": {"required": ["reason"]}},
}

_UTTERANCE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "pattern": "\\S"},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "pattern": "\\S"},
                "transcription": {
                    "description": "failed: send ...input_audio_transcription.failed instead.",
                    "enum": ["completed", "failed"],
                },
                "speaker": {
                    "description": "Speaker label in diarized transcription segments.",
                    "type": "string",
                    "minLength": 1,
                },
            },
        },
    ]
}

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
        "generation_speed": {
            **_SPEED_SCHEMA,
            "description": "This response's speed, overriding the session's.",
        },
        "ending": _ENDING_SCHEMA,
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
                "generation_speed": _SPEED_SCHEMA,
                "transcription_order": {
                    "description": "When input transcription arrives: seeded (before or after "
                    "response.created, drawn per turn), before_response or after_response.",
                    "enum": ["seeded", "before_response", "after_response"],
                },
                "seed": {
                    "description": "Seed for timing draws (speeds, transcription order).",
                    "type": "integer",
                },
                "rate_limits": {
                    "description": "Per-minute limits reported by rate_limits.updated.",
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "requests": {"type": "integer", "minimum": 1},
                        "tokens": {"type": "integer", "minimum": 1},
                    },
                },
                "audio_delta_ms": _value_or_range(
                    "Audio per delta: a fixed size or [min, max].",
                    type="integer",
                    minimum=10,
                    maximum=1000,
                ),
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
            "items": _UTTERANCE_SCHEMA,
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
class EndingSpec:
    status: EndingStatus
    reason: EndingReason | None = None
    at_fraction: float = 0.5
    error: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserUtterance:
    text: str
    transcription: Literal["completed", "failed"] = "completed"
    speaker: str = "A"


SpeedSetting = float | tuple[float, float]


def draw_generation_speed(setting: SpeedSetting, *, seed: int, response_index: int) -> float:
    """The speed one response is generated at: pinned, or drawn from a seeded log-normal spread
    over [min, max] (median their geometric mean), the same for the same seed and index."""
    if not isinstance(setting, tuple):
        return float(setting)
    low, high = setting
    median = math.sqrt(low * high)
    rng = random.Random(f"speed:{seed}:{response_index}")
    return min(high, max(low, median * math.exp(rng.gauss(0.0, _SPEED_SIGMA))))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseSpec:
    say: str | None = None
    function_calls: tuple[FunctionCallSpec, ...] = ()
    audio_delay_ms: int = 0
    linger_ms: int = 0
    drop_at_fraction: float | None = None
    label: str | None = None
    generation_speed: SpeedSetting | None = None
    ending: EndingSpec | None = None

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
    generation_speed: SpeedSetting = DEFAULT_GENERATION_SPEED
    transcription_order: TranscriptionOrder = "seeded"
    seed: int = 0
    rate_limits: Mapping[str, int] = field(default_factory=dict)
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
    """The user's lines, as text (what a driver speaks)."""
    utterances: tuple[UserUtterance, ...] = ()
    """The same lines with their options (transcription outcome, speaker), in order."""
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
        if "generation_speed" in session_data:
            session_data["generation_speed"] = _speed_from(
                session_data["generation_speed"], source=source, path="session/generation_speed"
            )
        utterances = tuple(_utterance_from(u) for u in data.get("user_utterances", ()))
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            session=SessionSpec(**session_data),
            user_utterances=tuple(u.text for u in utterances),
            utterances=utterances,
            responses=tuple(
                _response_from(r, source=source, path=f"responses/{i}")
                for i, r in enumerate(data["responses"])
            ),
            fallback=(
                _response_from(data["fallback"], source=source, path="fallback")
                if "fallback" in data
                else _DEFAULT_FALLBACK
            ),
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


def _speed_from(value: Any, *, source: str, path: str) -> SpeedSetting:
    if isinstance(value, list):
        low, high = float(value[0]), float(value[1])
        if low > high:
            raise ScenarioError(f"{source}: {path}: min {low:g} > max {high:g}")
        return (low, high)
    return float(value)


def _utterance_from(data: str | Mapping[str, Any]) -> UserUtterance:
    if isinstance(data, str):
        return UserUtterance(text=data)
    return UserUtterance(
        text=data["text"],
        transcription=data.get("transcription", "completed"),
        speaker=data.get("speaker", "A"),
    )


def _ending_from(data: Mapping[str, Any] | None) -> EndingSpec | None:
    if data is None:
        return None
    return EndingSpec(
        status=data["status"],
        reason=data.get("reason"),
        at_fraction=data.get("at_fraction", 0.5),
        error=data.get("error"),
    )


def _response_from(data: Mapping[str, Any], *, source: str, path: str) -> ResponseSpec:
    speed = data.get("generation_speed")
    return ResponseSpec(
        say=data.get("say"),
        function_calls=tuple(_call_from(call) for call in data.get("function_calls", ())),
        audio_delay_ms=data.get("audio_delay_ms", 0),
        linger_ms=data.get("linger_ms", 0),
        drop_at_fraction=data.get("drop_at_fraction"),
        label=data.get("label"),
        generation_speed=(
            None
            if speed is None
            else _speed_from(speed, source=source, path=f"{path}/generation_speed")
        ),
        ending=_ending_from(data.get("ending")),
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
