"""Conversions between store records and API messages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from services.api.earpiece.v1 import replay_pb2, session_pb2
from services.store.events import SessionRecord, SessionStatus

STATUS: dict[SessionStatus, session_pb2.SessionStatus.ValueType] = {
    "active": session_pb2.SESSION_STATUS_ACTIVE,
    "ended": session_pb2.SESSION_STATUS_ENDED,
}
STATUS_NAMES: dict[session_pb2.SessionStatus.ValueType, SessionStatus] = {
    v: k for k, v in STATUS.items()
}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def config_to_dict(config: session_pb2.SessionConfig) -> dict[str, Any]:
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def session_message(record: SessionRecord) -> session_pb2.Session:
    config = session_pb2.SessionConfig()
    json_format.ParseDict(record.config.get("request", {}), config, ignore_unknown_fields=True)
    return session_pb2.Session(
        session_id=record.session_id,
        tenant_id=record.tenant_id,
        status=STATUS.get(record.status, session_pb2.SESSION_STATUS_UNSPECIFIED),
        config=config,
        created_at=timestamp(record.created_at),
        ended_at=timestamp(record.ended_at),
        end_reason=record.end_reason or "",
        prompt_hash=record.prompt_hash or "",
    )


PAGE_EVENTS = 1000
PAGE_BYTES = 1 << 20  # a page stays far under gRPC's default 4 MiB receive limit
_EVENT_OVERHEAD = 64  # tags, lengths, numbers and the two timestamps of one Event


def event_pages(
    session_id: str,
    rows: Iterable[asyncpg.Record],
    *,
    max_events: int = PAGE_EVENTS,
    max_bytes: int = PAGE_BYTES,
) -> Iterator[replay_pb2.ReadEventsResponse]:
    """ReadEvents pages of `store.reader.read_api_rows` rows: at most `max_events` events, and
    no more than about `max_bytes` (an event that large alone is a page of its own). Events are
    built in place in the page and times set as seconds and nanos: no datetime, no Timestamp
    or Event object of their own, which cost more per row than the rest."""
    page = replay_pb2.ReadEventsResponse()
    events = page.events
    size = 0
    fixed = len(session_id) + _EVENT_OVERHEAD
    for seq, event_id, kind, source, producer_us, receive_us, position, payload in rows:
        # isascii is O(1) on str; only other payloads pay for their UTF-8 length.
        grows = fixed + len(event_id) + len(kind) + len(source)
        grows += len(payload) if payload.isascii() else len(payload.encode())
        if len(events) >= max_events or (events and size + grows > max_bytes):
            yield page
            page = replay_pb2.ReadEventsResponse()
            events = page.events
            size = 0
        size += grows
        event = events.add(
            session_id=session_id,
            seq=seq,
            event_id=event_id,
            kind=kind,
            source=source,
            payload_json=payload,
            position=position,
        )
        seconds, micros = divmod(receive_us, 1_000_000)
        event.receive_time.seconds = seconds
        event.receive_time.nanos = micros * 1000
        if producer_us is not None:
            seconds, micros = divmod(producer_us, 1_000_000)
            event.producer_time.seconds = seconds
            event.producer_time.nanos = micros * 1000
    if events:
        yield page
