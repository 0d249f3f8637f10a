"""Activities that record the session's lifecycle in Postgres."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.gateway.rebuild import open_calls
from services.gateway.turns import outcome_record
from services.store.event_store import EventStore
from services.store.events import WriterFailed
from workflows.messages import RecordEndInput, dropped_output

# SQLSTATE classes no retry can fix: data exceptions (22), integrity (23), syntax or access (42).
_PERMANENT_SQLSTATE_CLASSES = frozenset({"22", "23", "42"})


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, WriterFailed | ValueError | TypeError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in _PERMANENT_SQLSTATE_CLASSES
    return False


class SessionStoreActivities:
    """Holds the worker's EventStore; Temporal calls the bound methods."""

    def __init__(self, *, store: EventStore) -> None:
        self._store = store

    @activity.defn
    async def record_session_end(self, input: RecordEndInput) -> None:
        """Marks the session ended. When no gateway held the session, this appends the end event
        itself; the writer's primary key on (session, seq) makes a racing writer fail loudly.

        Errors that no retry can fix (a reason Postgres refuses, a batch the database rejects)
        fail the activity non-retryably, so the workflow can end the session anyway instead of
        retrying forever; connection trouble is retried."""
        if "\x00" in input.reason:
            raise ApplicationError(
                "the end reason contains a NUL character, which Postgres cannot store",
                type="InvalidEndReason",
                non_retryable=True,
            )
        try:
            if input.append_event:
                writer = await self._store.open_writer(input.session_id)
                try:
                    # Calls the log holds with no outcome (their holder is gone): closed now.
                    for call in await open_calls(self._store.pool, input.session_id):
                        kind, payload = outcome_record(dropped_output(call, reason="session_ended"))
                        writer.append(kind=kind, source="workflow", payload=payload)
                    writer.append(
                        kind="session.ended",
                        source="workflow",
                        payload={"reason": input.reason},
                    )
                finally:
                    await writer.close()
            await self._store.mark_ended(session_id=input.session_id, reason=input.reason)
        except Exception as exc:
            if _permanent(exc):
                raise ApplicationError(
                    f"recording the end of session {input.session_id} failed for good "
                    f"({type(exc).__name__}: {exc})",
                    type=type(exc).__name__,
                    non_retryable=True,
                ) from exc
            raise
