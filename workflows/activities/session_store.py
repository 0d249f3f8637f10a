"""Activities that record the session's lifecycle in Postgres."""

from __future__ import annotations

from temporalio import activity

from services.store.event_store import EventStore
from workflows.messages import RecordEndInput


class SessionStoreActivities:
    """Holds the worker's EventStore; Temporal calls the bound methods."""

    def __init__(self, *, store: EventStore) -> None:
        self._store = store

    @activity.defn
    async def record_session_end(self, input: RecordEndInput) -> None:
        """Marks the session ended. When no gateway held the session, this appends the end event
        itself; the writer's primary key on (session, seq) makes a racing writer fail loudly."""
        if input.append_event:
            writer = await self._store.open_writer(input.session_id)
            try:
                writer.append(
                    kind="session.ended",
                    source="workflow",
                    payload={"reason": input.reason},
                )
            finally:
                await writer.close()
        await self._store.mark_ended(session_id=input.session_id, reason=input.reason)
