"""ReplayService on real parts: a session recorded through gRPC, read back as a timeline,
metrics, a stereo WAV and through search; every read lands in the audit trail and the
session's own log is unchanged by being read."""

from __future__ import annotations

import io
import wave

import grpc
import pytest

from services.api.earpiece.v1 import replay_pb2 as pb
from services.api.earpiece.v1 import replay_pb2_grpc
from services.client import authorized_channel
from services.gateway.server import RunningGateway
from services.store.event_store import EventStore
from tests.conftest import MakeKey
from tests.replay.conftest import Recorded


async def test_timeline_has_turns_barge_in_tools_and_context(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, recorded: Recorded
) -> None:
    t = await replay.GetTimeline(pb.GetTimelineRequest(session_id=recorded.session_id))
    assert t.session_id == recorded.session_id
    assert len(t.turns) == 2
    assert t.turns[0].user_transcript
    assert t.turns[1].barged_in
    assert len(t.interruptions) == 1
    cut = t.interruptions[0]
    long_answer = next(r for r in t.responses if r.response_id == cut.response_id)
    assert long_answer.interrupted
    assert long_answer.played_ms == min(cut.audio_end_ms, long_answer.generated_ms)
    # The transcript as heard is a prefix of what was generated (cut in proportion).
    assert long_answer.heard_transcript
    assert long_answer.transcript.startswith(long_answer.heard_transcript)
    assert t.turns[0].assistant_transcript == long_answer.heard_transcript
    outcomes = {c.name: c.outcome for c in t.tool_calls}
    assert outcomes == {"highlight_element": "dropped", "mark_step_complete": "succeeded"}
    ran = next(c for c in t.tool_calls if c.name == "mark_step_complete")
    # At a barge-in, speech is done (cut) before the cancelled response's calls are held.
    assert ran.requested_ms <= ran.held_ms <= ran.started_ms
    assert ran.requested_ms <= ran.speech_done_ms <= ran.started_ms
    assert ran.started_ms <= ran.finished_ms
    assert len(t.contexts) == 1 and '"step": 1' in t.contexts[0].state_json
    assert [s.end_ms > s.start_ms for s in t.user_speech] == [True, True]


async def test_metrics_latency_talk_time_and_cost(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, recorded: Recorded
) -> None:
    m = await replay.GetMetrics(pb.GetMetricsRequest(session_id=recorded.session_id))
    assert len(m.turns) == 2
    first = m.turns[0]
    assert first.HasField("first_audio_latency_ms") and first.first_audio_latency_ms >= 0
    assert 0 <= first.earpiece_ms <= first.first_audio_latency_ms
    assert first.model_ms == first.first_audio_latency_ms - first.earpiece_ms
    assert m.interruptions == 1
    assert m.user_talk_ms > 0 and m.assistant_talk_ms > 0
    assert m.usage["output_tokens"] > 0
    assert m.cost_usd > 0 and m.priced_as
    assert len(m.tool_duration_ms) == 1 and len(m.speech_done_to_tool_start_ms) == 1


async def test_export_audio_is_stereo_on_the_wall_clock(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, recorded: Recorded
) -> None:
    chunks = [
        c async for c in replay.ExportAudio(pb.ExportAudioRequest(session_id=recorded.session_id))
    ]
    info = chunks[0].info
    data = b"".join(c.wav for c in chunks[1:])
    assert info.wav_bytes == len(data)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 24_000, 2)
        seconds = w.getnframes() / 24_000
    t = await replay.GetTimeline(pb.GetTimelineRequest(session_id=recorded.session_id))
    assert abs(seconds * 1000 - t.duration_ms) < 100
    assert abs(info.duration_ms - t.duration_ms) < 100
    assert list(info.markers) == []


async def test_search_by_tool_words_and_latency(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, recorded: Recorded
) -> None:
    async def ids(**kw: object) -> list[str]:
        found = await replay.SearchSessions(pb.SearchSessionsRequest(**kw))  # type: ignore[arg-type]
        return [s.session_id for s in found.sessions]

    sid = recorded.session_id
    assert sid in await ids(tenant_id="replay-t")
    assert sid in await ids(tenant_id="replay-t", tool_name="highlight_element", status="ended")
    assert sid not in await ids(tenant_id="replay-t", tool_name="get_hint")
    assert sid in await ids(tenant_id="replay-t", text="fractions")
    assert sid not in await ids(tenant_id="replay-t", text="photosynthesis")
    assert sid in await ids(tenant_id="replay-t", min_interruptions=1)
    assert sid not in await ids(tenant_id="replay-t", min_first_audio_latency_ms=60_000)
    assert sid not in await ids(tenant_id="someone-else")
    request = pb.SearchSessionsRequest(tenant_id="replay-t", text="fraction")
    found = await replay.SearchSessions(request)
    assert "[" in next(s.snippet for s in found.sessions if s.session_id == sid)


async def test_reads_are_audited_and_leave_the_log_alone(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub, recorded: Recorded, store: EventStore
) -> None:
    before = await store.last_seq(recorded.session_id)
    await replay.GetTimeline(pb.GetTimelineRequest(session_id=recorded.session_id))
    _ = [e async for e in replay.ReadEvents(pb.ReadEventsRequest(session_id=recorded.session_id))]
    assert await store.last_seq(recorded.session_id) == before
    audit = await replay.QueryAudit(pb.QueryAuditRequest(session_id=recorded.session_id))
    actions = [r.action for r in audit.records]
    assert "get_timeline" in actions and "read_events" in actions
    assert all(r.peer for r in audit.records)


async def test_unknown_session_is_not_found(replay: replay_pb2_grpc.ReplayServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await replay.GetTimeline(pb.GetTimelineRequest(session_id="no-such-session"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_roles_and_tenants(
    gateway: RunningGateway, recorded: Recorded, api_key: MakeKey
) -> None:
    sid = recorded.session_id

    async def call(tenant: str, role: str, method: str, request: object) -> grpc.StatusCode:
        async with authorized_channel(gateway.address, api_key=await api_key(tenant, role)) as ch:
            stub = replay_pb2_grpc.ReplayServiceStub(ch)
            try:
                await getattr(stub, method)(request)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    timeline = pb.GetTimelineRequest(session_id=sid)
    assert await call("replay-t", "analyst", "GetTimeline", timeline) == grpc.StatusCode.OK
    # Another tenant's analyst: exactly as if the session did not exist.
    assert await call("other-t", "analyst", "GetTimeline", timeline) == grpc.StatusCode.NOT_FOUND
    assert await call("replay-t", "client", "GetTimeline", timeline) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    audit = pb.QueryAuditRequest(session_id=sid)
    assert await call("replay-t", "analyst", "QueryAudit", audit) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    search = pb.SearchSessionsRequest(tenant_id="other-t")
    assert await call("replay-t", "analyst", "SearchSessions", search) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    found = pb.SearchSessionsRequest(text="fractions")
    async with authorized_channel(
        gateway.address, api_key=await api_key("other-t", "analyst")
    ) as ch:
        response = await replay_pb2_grpc.ReplayServiceStub(ch).SearchSessions(found)
    assert sid not in {s.session_id for s in response.sessions}
    # The reads above are in the trail under the analyst's key and tenant.
    admin = pb.QueryAuditRequest(session_id=sid, action="get_timeline")
    async with authorized_channel(gateway.address, api_key=await api_key("acme", "admin")) as ch:
        trail = await replay_pb2_grpc.ReplayServiceStub(ch).QueryAudit(admin)
    analysts = [r for r in trail.records if r.tenant_id == "replay-t"]
    assert analysts and all(r.key_id.startswith("ep_") and r.role == "analyst" for r in analysts)
    assert all(r.peer.startswith(("ipv4:", "ipv6:", "local:")) for r in trail.records)


async def test_bad_filters_are_invalid_argument(
    replay: replay_pb2_grpc.ReplayServiceAsyncStub,
) -> None:
    bad = [
        pb.SearchSessionsRequest(text="a\x00b"),
        pb.SearchSessionsRequest(tenant_id="no spaces allowed"),
        pb.SearchSessionsRequest(min_first_audio_latency_ms=2**32 - 1),
        pb.SearchSessionsRequest(page_token="not-a-token"),
        pb.SearchSessionsRequest(status="lost"),
        pb.QueryAuditRequest(limit=2**31),
        pb.SetRetentionRequest(tenant_id="t", audio_days=2**32 - 1),
        pb.SetRetentionRequest(),
    ]
    for request in bad:
        method = {
            pb.SearchSessionsRequest: replay.SearchSessions,
            pb.QueryAuditRequest: replay.QueryAudit,
            pb.SetRetentionRequest: replay.SetRetention,
        }[type(request)]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await method(request)  # type: ignore[operator]
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await replay.GetMetrics(pb.GetMetricsRequest(session_id="../etc"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
