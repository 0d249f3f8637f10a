"""ReplayService: a session's events exactly as recorded, streamed (never loaded whole)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services.api.earpiece.v1 import replay_pb2 as pb
from services.api.earpiece.v1 import replay_pb2_grpc
from services.auth import current_principal, may_see
from services.gateway import validation
from services.gateway.convert import event_pages
from services.gateway.errors import abort_invalid
from services.replay.rpcs import ReplayRpcs
from services.store.event_store import EventStore


class ReplayService(ReplayRpcs, replay_pb2_grpc.ReplayServiceServicer):
    def __init__(self, *, store: EventStore) -> None:
        self.store = store

    async def ReadEvents(
        self, request: pb.ReadEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ReadEventsResponse]:
        try:
            validation.require_session_id(request.session_id)
            validation.validate_after_seq(request.after_seq)
        except validation.InvalidField as exc:
            await abort_invalid(context, exc)
        record = await self.store.get_session(request.session_id)
        if record is None or not may_see(current_principal(), record.tenant_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no session {request.session_id!r}")
        await self.audit_read(
            context, "read_events", request.session_id, after_seq=request.after_seq
        )
        # Pages of events, not a message per event: gRPC's per-message cost in Python is
        # larger than an event's (issue 14). The limit goes to the query, never read past.
        async for rows in self.store.read_event_rows(
            request.session_id, after_seq=request.after_seq, limit=request.limit
        ):
            for page in event_pages(request.session_id, rows):
                yield page
