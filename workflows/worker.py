"""The session worker: runs SessionWorkflow and its store activities on the shared queue."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from services.store.event_store import EventStore
from workflows.activities.session_store import SessionStoreActivities
from workflows.messages import SESSION_TASK_QUEUE
from workflows.retention import RetentionActivities, RetentionWorkflow
from workflows.session_workflow import SessionWorkflow
from workflows.tools.activities import ToolActivities


def session_worker(*, client: Client, store: EventStore) -> Worker:
    activities = SessionStoreActivities(store=store)
    tools = ToolActivities(pool=store.pool)
    retention = RetentionActivities(pool=store.pool)
    return Worker(
        client,
        task_queue=SESSION_TASK_QUEUE,
        workflows=[SessionWorkflow, RetentionWorkflow],
        activities=[activities.record_session_end, tools.run_tool, retention.purge_expired_audio],
    )
