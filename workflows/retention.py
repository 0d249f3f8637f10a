"""Per-tenant audio retention as a Temporal Schedule: every hour (by default) the
`AudioRetention` workflow runs one activity that purges stored audio past each tenant's
retention (services/replay/retention.py). A Schedule, not a cron loop in a process: it survives
restarts, never runs twice at once (overlap SKIP), and its runs are visible in Temporal."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import asyncpg

    from services.replay.retention import PurgeReport, purge_expired_audio
    from workflows.messages import SESSION_TASK_QUEUE

PURGE_EXPIRED_AUDIO = "purge_expired_audio"
RETENTION_SCHEDULE_ID = "earpiece-audio-retention"


class RetentionActivities:
    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name=PURGE_EXPIRED_AUDIO)
    async def purge_expired_audio(self) -> PurgeReport:
        info = activity.info()
        return await purge_expired_audio(
            self.pool, run_id=f"{info.workflow_id}/{info.workflow_run_id}"
        )


@workflow.defn(name="AudioRetention")
class RetentionWorkflow:
    @workflow.run
    async def run(self) -> PurgeReport:
        return await workflow.execute_activity(
            PURGE_EXPIRED_AUDIO,
            start_to_close_timeout=timedelta(minutes=30),
            # A failing purge is retried by the next scheduled run, not hammered now.
            retry_policy=RetryPolicy(maximum_attempts=3),
            result_type=PurgeReport,
        )


async def ensure_retention_schedule(
    client: Client, *, every: timedelta = timedelta(hours=1), task_queue: str = SESSION_TASK_QUEUE
) -> None:
    """Creates the retention schedule if it does not exist yet (idempotent)."""
    with contextlib.suppress(ScheduleAlreadyRunningError):
        await client.create_schedule(
            RETENTION_SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    RetentionWorkflow.run, id="earpiece-audio-retention-run", task_queue=task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
