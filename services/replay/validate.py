"""Checks on what analysts send, before any of it reaches Postgres: the same rules as the rest
of the API (services/gateway/validation.py: no NUL, no lone surrogate, bounded sizes and
numbers), each failure an `InvalidField` naming the field."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.api.earpiece.v1 import replay_pb2 as pb
from services.gateway.validation import (
    SESSION_ID,
    TENANT_ID,
    InvalidField,
    check_string,
    timestamp_datetime,
)
from services.replay.service import AuditQuery, SearchFilters

MAX_PAGE = 500
MAX_AUDIT_ROWS = 10_000
MAX_LATENCY_MS = 86_400_000  # a day: any threshold above means "none"
MAX_COUNT = 1_000_000
MAX_RETENTION_DAYS = 36_500
MAX_TEXT = 1_000


def tenant(field: str, value: str, *, required: bool = False) -> str:
    if not value:
        if required:
            raise InvalidField(field, "is required")
        return ""
    if not TENANT_ID.match(value):
        raise InvalidField(field, "must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


def session_id(field: str, value: str) -> str:
    if value and not SESSION_ID.match(value):
        raise InvalidField(field, "must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return value


def bounded(field: str, value: int, most: int) -> int:
    if value < 0 or value > most:
        raise InvalidField(field, f"must be between 0 and {most}")
    return value


def page_token(value: str) -> str:
    if not value:
        return ""
    check_string("page_token", value, max_chars=512)
    try:
        at, sid = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
        datetime.fromisoformat(at)
        session_id("page_token", str(sid))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise InvalidField("page_token", "is not one this server returned") from exc
    return value


def _time(field: str, request: pb.SearchSessionsRequest | pb.QueryAuditRequest) -> datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    value: Timestamp = getattr(request, field)
    return timestamp_datetime(field, value)


def text(field: str, value: str, most: int) -> str | None:
    return check_string(field, value, max_chars=most) or None


def search_filters(
    *,
    tenant_id: str | None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    status: str = "",
    prompt_hash: str = "",
    persona: str = "",
    tool_name: str = "",
    error_kind: str = "",
    min_first_audio_latency_ms: int = 0,
    min_interruptions: int = 0,
    words: str = "",
    page_size: int = 0,
    token: str = "",
) -> SearchFilters:
    """`tenant_id` is the tenant the caller acts for, already checked (None: every tenant)."""
    if status not in ("", "active", "ended"):
        raise InvalidField("status", "is 'active', 'ended' or empty")
    return SearchFilters(
        tenant_id=tenant_id,
        created_after=created_after,
        created_before=created_before,
        status=status or None,
        prompt_hash=text("prompt_hash", prompt_hash, 64),
        persona=text("persona", persona, 200),
        tool_name=text("tool_name", tool_name, 128),
        error_kind=text("error_kind", error_kind, 200),
        min_first_audio_latency_ms=bounded(
            "min_first_audio_latency_ms", min_first_audio_latency_ms, MAX_LATENCY_MS
        )
        or None,
        min_interruptions=bounded("min_interruptions", min_interruptions, MAX_COUNT) or None,
        text=text("text", words, MAX_TEXT),
        page_size=bounded("page_size", page_size, MAX_PAGE) or 50,
        page_token=page_token(token),
    )


def search_request(request: pb.SearchSessionsRequest, acting: str | None) -> SearchFilters:
    return search_filters(
        tenant_id=acting,
        created_after=_time("created_after", request),
        created_before=_time("created_before", request),
        status=request.status,
        prompt_hash=request.prompt_hash,
        persona=request.persona,
        tool_name=request.tool_name,
        error_kind=request.error_kind,
        min_first_audio_latency_ms=request.min_first_audio_latency_ms,
        min_interruptions=request.min_interruptions,
        words=request.text,
        page_size=request.page_size,
        token=request.page_token,
    )


def audit_request(request: pb.QueryAuditRequest) -> AuditQuery:
    return AuditQuery(
        tenant_id=tenant("tenant_id", request.tenant_id) or None,
        session_id=session_id("session_id", request.session_id) or None,
        key_id=text("key_id", request.key_id, 128),
        action=text("action", request.action, 64),
        after=_time("after", request),
        before=_time("before", request),
        limit=bounded("limit", request.limit, MAX_AUDIT_ROWS) or 100,
    )


def retention_request(request: pb.SetRetentionRequest) -> tuple[str, int]:
    return (
        tenant("tenant_id", request.tenant_id, required=True),
        bounded("audio_days", request.audio_days, MAX_RETENTION_DAYS),
    )
