"""The tools a session may let the model call: name, argument schema, timeouts, retries, and
whether a call survives the user interrupting the response that made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

# Tools bounded by this run as local activities (see ToolSpec.runs_locally).
LOCAL_TOOL_LIMIT = timedelta(seconds=10)


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    start_to_close: timedelta = timedelta(seconds=10)
    maximum_attempts: int = 3
    # A call from a response the user cut off is dropped unless this is set (pipecat #4997: a
    # hallucinated end_call from an interrupted response hung up on a caller).
    survives_interruption: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def runs_locally(self) -> bool:
        """Short tools run as local activities, in the workflow's own worker: no task queue
        round trip (the model waits on it), and one history event instead of three, which is
        what keeps a session-hour of tool turns inside the history budget. Long ones run as
        ordinary activities, which can be heartbeated and cancelled mid-flight."""
        return self.start_to_close <= LOCAL_TOOL_LIMIT

    def realtime_definition(self) -> dict[str, Any]:
        """The tool as the Realtime session.update `tools` entry expects it."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in [
        ToolSpec(
            name="highlight_element",
            description="Highlight an element on the user's screen so they can find it.",
            parameters={
                "type": "object",
                "properties": {
                    "element_id": {"type": "string", "minLength": 1},
                    "reason": {"type": "string"},
                },
                "required": ["element_id"],
                "additionalProperties": False,
            },
            start_to_close=timedelta(seconds=5),
        ),
        ToolSpec(
            name="check_answer",
            description="Check the user's answer to the exercise on screen.",
            parameters={
                "type": "object",
                "properties": {"answer": {"type": "string", "minLength": 1}},
                "required": ["answer"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            name="get_hint",
            description="Get a hint for a topic without giving the answer away.",
            parameters={
                "type": "object",
                "properties": {"topic": {"type": "string", "minLength": 1}},
                "required": ["topic"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            name="open_exercise",
            description="Open an exercise of the current lesson on the user's screen.",
            parameters={
                "type": "object",
                "properties": {"exercise": {"type": "integer", "minimum": 1}},
                "required": ["exercise"],
                "additionalProperties": False,
            },
        ),
        ToolSpec(
            name="mark_step_complete",
            description="Record that the user finished a lesson step.",
            parameters={
                "type": "object",
                "properties": {
                    "lesson_id": {"type": "string", "minLength": 1},
                    "step": {"type": "integer", "minimum": 1},
                },
                "required": ["lesson_id", "step"],
                "additionalProperties": False,
            },
            survives_interruption=True,
        ),
    ]
}
