"""The event store: sessions, the append-only per-session event log, and audio in Postgres.

Use `EventStore` (event_store.py); the modules split it by layer: events (types and errors),
sessions, writer (the batched append path), reader, pool (the application role), migrations.
"""

from services.store.event_store import EventStore
from services.store.events import (
    AudioFrame,
    AudioRef,
    AudioStream,
    DuplicateClientEvent,
    Position,
    SessionRecord,
    SessionStatus,
    StoredEvent,
    StoreError,
    WriterClosed,
    WriterConflict,
    WriterFailed,
)
from services.store.writer import SessionWriter

__all__ = [
    "AudioFrame",
    "AudioRef",
    "AudioStream",
    "DuplicateClientEvent",
    "EventStore",
    "Position",
    "SessionRecord",
    "SessionStatus",
    "SessionWriter",
    "StoreError",
    "StoredEvent",
    "WriterClosed",
    "WriterConflict",
    "WriterFailed",
]
