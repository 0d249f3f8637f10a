"""Conversions between store records and API messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from services.api.earpiece.v1 import replay_pb2, session_pb2
from services.store.events import SessionRecord, SessionStatus, StoredEvent

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


def event_message(event: StoredEvent) -> replay_pb2.Event:
    return replay_pb2.Event(
        session_id=event.session_id,
        seq=event.seq,
        event_id=str(event.event_id),
        kind=event.kind,
        source=event.source,
        producer_time=timestamp(event.producer_time),
        receive_time=timestamp(event.receive_time),
        payload_json=event.payload_json,
        position=event.position,
    )
