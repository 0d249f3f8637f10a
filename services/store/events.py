"""What the event store hands back: session records, stored events, positions in the global
log, audio frames, and the errors a writer can stop with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

AudioStream = Literal["input", "output"]
"""'input' is the user's microphone, 'output' the assistant's voice."""

AUDIO_STREAMS: tuple[AudioStream, ...] = ("input", "output")

SessionStatus = Literal["active", "ended"]


class Position(NamedTuple):
    """A place in the global log: events are ordered by (tx, position) across all sessions.

    The writing transaction's id comes first so that a reader which stays below the oldest
    running transaction never passes an event that has yet to commit."""

    tx: int
    position: int


START = Position(0, 0)


@dataclass(frozen=True, slots=True)
class AudioRef:
    """Where an event's audio lives: `length` bytes at byte `offset` of the session's stream."""

    stream: AudioStream
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of a session's log. The payload stays JSON text exactly as stored; decoding is
    the replay bottleneck, so `payload` decodes only when asked (and on every access)."""

    session_id: str
    seq: int
    event_id: str
    kind: str
    source: str
    producer_time: datetime | None
    receive_time: datetime
    tx: int
    position: int
    client_event_id: str | None
    audio: AudioRef | None
    payload_json: str

    @property
    def payload(self) -> Any:
        return json.loads(self.payload_json)

    @property
    def global_position(self) -> Position:
        return Position(self.tx, self.position)


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One recorded audio frame: where it sits in its stream, when it arrived, its bytes."""

    offset: int
    received_at: datetime
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored: who it belongs to, how it was configured, whether it has ended."""

    session_id: str
    tenant_id: str
    status: SessionStatus
    config: dict[str, Any]
    prompt_hash: str | None
    created_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    # True only on the create_session call that inserted the row.
    created: bool = False

    @property
    def cursor(self) -> tuple[datetime, str]:
        """The keyset cursor for `list_sessions(after=...)` to continue after this record."""
        return (self.created_at, self.session_id)


class StoreError(Exception):
    """Base class of the event store's own errors."""


class WriterConflict(StoreError):
    """Another writer recorded events for this session (a unique violation on (session_id,
    seq)). The writer has stopped for good; its unflushed events are dropped, never renumbered.
    Re-open a writer (it resumes after the other's last event) only once the other is gone."""


class WriterFailed(StoreError):
    """The database refused a batch for a reason retrying cannot fix; the writer has stopped."""


class WriterClosed(StoreError):
    """The writer was closed (or is closing); nothing more can be appended."""


class DuplicateClientEvent(StoreError, ValueError):
    """This session already recorded an event with this client event id."""

    def __init__(self, client_event_id: str) -> None:
        super().__init__(f"client event id {client_event_id!r} was already recorded")
        self.client_event_id = client_event_id
