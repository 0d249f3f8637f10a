"""ReplayService: a session's events exactly as recorded, streamed (never loaded whole)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services.api.earpiece.v1 import replay_pb2 as pb
from services.api.earpiece.v1 import replay_pb2_grpc
from services.auth import current_principal, may_see
from services.gateway import validation
from services.gateway.convert import event_message
from services.gateway.errors import abort_invalid
from services.replay.rpcs import ReplayRpcs
from services.store.event_store import EventStore


class ReplayService(ReplayRpcs, replay_pb2_grpc.ReplayServiceServicer):
    def __init__(self, *, store: EventStore) -> None:
        self.store = store

    async def ReadEvents(
        self, request: pb.ReadEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Event]:
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
        sent = 0
        async for event in self.store.read_events(request.session_id, after_seq=request.after_seq):
            yield event_message(event)
            sent += 1
            if request.limit and sent >= request.limit:
                return
