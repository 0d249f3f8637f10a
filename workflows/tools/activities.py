"""The example tools of a screen tutor, as activities.

Arguments are checked against the tool's JSON schema first: a mismatch fails without running the
tool and without retries, and the model is told what was wrong.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import jsonschema
from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.messages import RunToolInput
from workflows.tools.registry import TOOLS, ToolSpec

# The example lesson catalogue: lesson id → number of steps.
LESSONS = {"fractions-101": 3, "decimals-101": 4}
ACCEPTED_ANSWERS = frozenset({"3/4", "9/12", "13/12", "11/12"})
HINTS = {
    "fractions": "Find a denominator both fractions share, then add the numerators.",
    "decimals": "Line the decimal points up before you add.",
}


class ToolActivities:
    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="run_tool")
    async def run_tool(self, input: RunToolInput) -> str:
        spec = TOOLS.get(input.call.name)
        if spec is None:
            raise ApplicationError(
                f"unknown tool {input.call.name!r}", type="InvalidToolArguments", non_retryable=True
            )
        arguments = parse_arguments(spec, input.call.arguments)
        match spec.name:
            case "mark_step_complete":
                result = await self._mark_step_complete(input, arguments)
            case "highlight_element":
                result = {"highlighted": arguments["element_id"]}
            case "open_exercise":
                result = {"opened": arguments["exercise"]}
            case "check_answer":
                answer = arguments["answer"].replace(" ", "")
                result = {"answer": answer, "correct": answer in ACCEPTED_ANSWERS}
            case "get_hint":
                result = {"hint": HINTS.get(arguments["topic"], HINTS["fractions"])}
            case _:
                raise ApplicationError(f"tool {spec.name!r} has no implementation")
        return json.dumps(result)

    async def _mark_step_complete(
        self, input: RunToolInput, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        steps = LESSONS.get(arguments["lesson_id"])
        if steps is None or arguments["step"] > steps:
            # A real failure the model must hear about, so it can tell the user.
            raise ApplicationError(
                f"lesson {arguments['lesson_id']!r} has no step {arguments['step']}",
                type="UnknownLessonStep",
                non_retryable=True,
            )
        inserted = await self._pool.fetchval(
            """
            INSERT INTO lesson_progress (idempotency_key, session_id, lesson_id, step)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING true
            """,
            input.idempotency_key,
            input.session_id,
            arguments["lesson_id"],
            arguments["step"],
        )
        return {
            "lesson_id": arguments["lesson_id"],
            "step": arguments["step"],
            "completed": True,
            "already_recorded": not inserted,
        }


def parse_arguments(spec: ToolSpec, text: str) -> dict[str, Any]:
    """The model's argument JSON, validated; raises a non-retryable error naming the problem."""
    try:
        arguments = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ApplicationError(
            f"arguments for {spec.name} are not valid JSON: {exc}",
            type="InvalidToolArguments",
            non_retryable=True,
        ) from exc
    errors = sorted(
        jsonschema.Draft202012Validator(spec.parameters).iter_errors(arguments),
        key=lambda e: list(e.path),
    )
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(top level)"
        raise ApplicationError(
            f"arguments for {spec.name} do not match its schema at {where}: {errors[0].message}",
            type="InvalidToolArguments",
            non_retryable=True,
        )
    assert isinstance(arguments, dict)
    return arguments
