"""ReplayService's analyst RPCs, thin over `ReplayReader` and the pure analysis: check the
caller, find the session (another tenant's answers NOT_FOUND like a missing one), audit the
read, convert. `services/gateway/replay_service.py` mixes this into the servicer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

import grpc

from services.api.earpiece.v1 import replay_pb2 as pb
from services.gateway import validation
from services.gateway.errors import abort_invalid
from services.replay import validate
from services.replay.access import AccessDenied, Caller, replay_caller
from services.replay.messages import (
    audit_message,
    marker_message,
    metrics_message,
    summary_message,
    timeline_message,
)
from services.replay.service import ReplayReader
from services.store.event_store import EventStore
from services.store.events import SessionRecord

WAV_CHUNK_MS = 10_000  # 960 KB of stereo per message, under gRPC's 4 MB default


async def _not_found(context: grpc.aio.ServicerContext, session_id: str) -> NoReturn:
    await context.abort(grpc.StatusCode.NOT_FOUND, f"no session {session_id!r}")
    raise AssertionError("unreachable")


class ReplayRpcs:
    store: EventStore

    @property
    def reader(self) -> ReplayReader:
        found: ReplayReader | None = getattr(self, "_reader", None)
        if found is None:
            found = ReplayReader(self.store)
            self._reader = found
        return found

    async def _visible(
        self, context: grpc.aio.ServicerContext, session_id: str, action: str
    ) -> tuple[Caller, SessionRecord]:
        caller = await replay_caller(context)
        try:
            validation.require_session_id(session_id)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        record = await self.reader.session(caller, session_id)
        if record is None:
            await _not_found(context, session_id)
        await self.reader.audit(caller, action, session_id=session_id)
        return caller, record

    async def audit_read(
        self, context: grpc.aio.ServicerContext, action: str, session_id: str, **detail: object
    ) -> None:
        """For reads served elsewhere (ReadEvents): the audit record of this caller's read."""
        caller = await replay_caller(context)
        await self.reader.audit(caller, action, session_id=session_id, detail=dict(detail))

    async def GetTimeline(
        self, request: pb.GetTimelineRequest, context: grpc.aio.ServicerContext
    ) -> pb.Timeline:
        _, record = await self._visible(context, request.session_id, "get_timeline")
        analysis, _ = await self.reader.analyse(record)
        purged = await self.reader.audio_purged(record.session_id)
        return timeline_message(analysis, audio_purged=purged)

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.Metrics:
        _, record = await self._visible(context, request.session_id, "get_metrics")
        analysis, _ = await self.reader.analyse(record)
        return metrics_message(analysis, self.reader.prices.model)

    async def ExportAudio(
        self, request: pb.ExportAudioRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AudioExportChunk]:
        _, record = await self._visible(context, request.session_id, "export_audio")
        _, audio = await self.reader.export_audio(record)
        yield pb.AudioExportChunk(
            info=pb.AudioExportInfo(
                sample_rate=24_000,
                channels=2,
                duration_ms=audio.duration_ms,
                markers=[marker_message(m) for m in audio.markers],
                wav_bytes=audio.wav_size,
            )
        )
        for chunk in audio.wav_chunks(WAV_CHUNK_MS):  # interleaved as sent, not all at once
            yield pb.AudioExportChunk(wav=chunk)

    async def SearchSessions(
        self, request: pb.SearchSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchSessionsResponse:
        caller = await replay_caller(context)
        try:
            tenant = caller.acting_tenant(validate.tenant("tenant_id", request.tenant_id))
        except AccessDenied as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        try:
            filters = validate.search_request(request, tenant or None)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        result = await self.reader.search(filters)
        await self.reader.audit(
            caller,
            "search_sessions",
            detail={"filters": _filters_detail(request), "found": len(result.sessions)},
        )
        return pb.SearchSessionsResponse(
            sessions=[summary_message(r) for r in result.sessions],
            next_page_token=result.next_page_token,
        )

    async def QueryAudit(
        self, request: pb.QueryAuditRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueryAuditResponse:
        caller = await replay_caller(context, admin_only=True)
        try:
            query = validate.audit_request(request)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        rows = await self.reader.query_audit(query)
        await self.reader.audit(caller, "query_audit", detail={"found": len(rows)})
        return pb.QueryAuditResponse(records=[audit_message(r) for r in rows])

    async def SetRetention(
        self, request: pb.SetRetentionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Retention:
        caller = await replay_caller(context, admin_only=True)
        try:
            tenant, days = validate.retention_request(request)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        await self.reader.set_retention(tenant, days)
        await self.reader.audit(
            caller, "set_retention", detail={"tenant_id": tenant, "audio_days": days}
        )
        return pb.Retention(tenant_id=tenant, audio_days=days)


def _filters_detail(request: pb.SearchSessionsRequest) -> dict[str, object]:
    return {
        f.name: (v.ToJsonString() if hasattr(v, "ToJsonString") else v)
        for f, v in request.ListFields()
        if f.name != "page_token"
    }
