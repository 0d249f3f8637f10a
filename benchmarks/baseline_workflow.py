"""The bare baseline for bench_tool_gate: a minimal workflow that schedules one activity when it
receives a signal. Kept in its own module so the workflow sandbox imports nothing heavy."""

from __future__ import annotations

import time
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_touch")
async def bench_touch(sent_at: float) -> float:
    return (time.time() - sent_at) * 1000


@workflow.defn
class SignalThenActivity:
    def __init__(self) -> None:
        self._sent_at: float | None = None

    @workflow.run
    async def run(self) -> float:
        await workflow.wait_condition(lambda: self._sent_at is not None)
        assert self._sent_at is not None
        result: float = await workflow.execute_activity(
            bench_touch, self._sent_at, start_to_close_timeout=timedelta(seconds=10)
        )
        return result

    @workflow.signal
    def go(self, sent_at: float) -> None:
        self._sent_at = sent_at
