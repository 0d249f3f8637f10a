"""Analysis → protobuf messages for ReplayService (and JSON for the CLI and the viewer)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from services.api.earpiece.v1 import replay_pb2 as pb
from services.replay.analysis import Analysis
from services.replay.audio import Marker
from services.replay.service import AuditRow, SummaryRow


def _ts(value: Any) -> Timestamp:
    ts = Timestamp()
    if value is not None:
        ts.FromDatetime(value)
    return ts


def timeline_message(a: Analysis, *, audio_purged: bool = False) -> pb.Timeline:
    msg = pb.Timeline(
        session_id=a.session_id,
        tenant_id=a.tenant_id,
        duration_ms=a.duration_ms,
        event_count=a.event_count,
        prompt_hash=a.prompt_hash,
        persona=a.persona,
        rerun_of=a.rerun_of,
        audio_purged=audio_purged,
        end_reason=a.ended_reason,
    )
    if a.started_at is not None:
        msg.started_at.CopyFrom(_ts(a.started_at))
    for t in a.turns:
        heard = " ".join(
            (a.responses[rid].heard_transcript or "")
            for rid in t.responses
            if rid in a.responses and a.responses[rid].heard_transcript
        )
        msg.turns.append(
            pb.Turn(
                index=t.index,
                speech_started_ms=t.speech_started_ms,
                speech_stopped_ms=t.speech_stopped_ms,
                user_transcript=t.user_transcript,
                assistant_transcript=heard,
                response_ids=t.responses,
                barged_in=t.barged_in,
            )
        )
    for r in a.responses.values():
        msg.responses.append(
            pb.AssistantResponse(
                response_id=r.response_id,
                turn=r.turn,
                item_id=r.item_id,
                requested_ms=r.requested_ms,
                first_audio_ms=r.first_audio_ms,
                done_ms=r.done_ms,
                playback_done_ms=r.playback_done_ms,
                status=r.status,
                transcript=r.transcript,
                heard_transcript=r.heard_transcript or "",
                generated_ms=r.generated_ms,
                played_ms=r.played_ms,
                interrupted=r.interrupted,
                cost_usd=r.cost_usd,
                reason=r.reason,
            )
        )
    for c in a.tools.values():
        msg.tool_calls.append(
            pb.ToolCall(
                call_id=c.call_id,
                name=c.name,
                arguments=c.arguments,
                response_id=c.response_id,
                requested_ms=c.requested_ms,
                held_ms=c.held_ms,
                speech_done_ms=c.speech_done_ms,
                started_ms=c.started_ms,
                finished_ms=c.finished_ms,
                outcome=c.outcome,
                output=c.output,
            )
        )
    for i in a.interruptions:
        msg.interruptions.append(
            pb.Interruption(
                at_ms=i.at_ms,
                response_id=i.response_id,
                item_id=i.item_id,
                audio_end_ms=i.audio_end_ms,
                generated_ms=i.generated_ms,
                heard_from=i.heard_from,
            )
        )
    for ctx in a.contexts:
        msg.contexts.append(
            pb.ContextInjection(
                at_ms=ctx.at_ms,
                item_id=ctx.item_id,
                hash=ctx.hash,
                state_json=json.dumps(ctx.state, sort_keys=True) if ctx.state else "",
                deleted_ms=ctx.deleted_ms,
            )
        )
    for link in a.links:
        msg.links.append(pb.LinkChange(at_ms=link.at_ms, kind=link.kind, reason=link.reason))
    for e in a.errors:
        msg.errors.append(
            pb.TimelineError(
                at_ms=e.at_ms, kind=e.kind, code=e.code, message=e.message, severity=e.severity
            )
        )
    for s in a.user_speech:
        msg.user_speech.append(pb.Span(start_ms=s.start_ms, end_ms=s.end_ms, label=s.label))
    for s in a.assistant_speech:
        msg.assistant_speech.append(pb.Span(start_ms=s.start_ms, end_ms=s.end_ms, label=s.label))
    for entry in a.entries:
        msg.entries.append(
            pb.TimelineEntry(at_ms=entry.at_ms, who=entry.who, what=entry.what, kind=entry.kind)
        )
    return msg


def metrics_message(a: Analysis, priced_as: str) -> pb.Metrics:
    m = a.metrics
    assert m is not None
    msg = pb.Metrics(
        session_id=a.session_id,
        first_audio_latency_p50_ms=m.first_audio_latency_p50_ms,
        first_audio_latency_max_ms=m.first_audio_latency_max_ms,
        earpiece_p50_ms=m.earpiece_p50_ms,
        speech_done_to_tool_start_ms=m.speech_done_to_tool_start_ms,
        tool_duration_ms=m.tool_durations_ms,
        interruptions=m.interruptions,
        user_talk_ms=m.user_talk_ms,
        assistant_talk_ms=m.assistant_talk_ms,
        usage=m.usage,
        cost_usd=m.cost_usd,
        priced_as=priced_as,
    )
    for t in m.turns:
        msg.turns.append(pb.TurnMetrics(**dataclasses.asdict(t)))
    return msg


def marker_message(m: Marker) -> pb.AudioMarker:
    return pb.AudioMarker(channel=m.channel, start_ms=m.start_ms, end_ms=m.end_ms, reason=m.reason)


def summary_message(row: SummaryRow) -> pb.SessionSummary:
    msg = pb.SessionSummary(
        session_id=row.session_id,
        tenant_id=row.tenant_id,
        status=row.status,
        prompt_hash=row.prompt_hash,
        persona=row.persona,
        turns=row.turns,
        tool_names=row.tool_names,
        error_kinds=row.error_kinds,
        interruptions=row.interruptions,
        first_audio_latency_p50_ms=row.first_audio_p50_ms,
        first_audio_latency_max_ms=row.first_audio_max_ms,
        cost_usd=row.cost_usd,
        duration_ms=row.duration_ms,
        rerun_of=row.rerun_of,
        snippet=row.snippet,
    )
    msg.created_at.CopyFrom(_ts(row.created_at))
    return msg


def audit_message(row: AuditRow) -> pb.AuditRecord:
    msg = pb.AuditRecord(
        audit_id=row.audit_id,
        key_id=row.key_id,
        tenant_id=row.tenant_id,
        role=row.role,
        action=row.action,
        session_id=row.session_id or "",
        peer=row.peer,
        detail_json=json.dumps(row.detail, sort_keys=True),
    )
    msg.at.CopyFrom(_ts(row.at))
    return msg


def analysis_json(a: Analysis, *, audio_purged: bool = False) -> dict[str, Any]:
    """Everything the viewer draws, as plain JSON."""
    m = a.metrics
    return {
        "session_id": a.session_id,
        "tenant_id": a.tenant_id,
        "started_at": a.started_at.isoformat() if a.started_at else None,
        "duration_ms": a.duration_ms,
        "event_count": a.event_count,
        "prompt_hash": a.prompt_hash,
        "persona": a.persona,
        "rerun_of": a.rerun_of,
        "audio_purged": audio_purged,
        "turns": [dataclasses.asdict(t) for t in a.turns],
        "responses": [
            {**dataclasses.asdict(r), "generated_ms": r.generated_ms, "played_ms": r.played_ms}
            for r in a.responses.values()
        ],
        "tools": [dataclasses.asdict(c) for c in a.tools.values()],
        "interruptions": [dataclasses.asdict(i) for i in a.interruptions],
        "contexts": [dataclasses.asdict(c) for c in a.contexts],
        "links": [dataclasses.asdict(link) for link in a.links],
        "errors": [dataclasses.asdict(e) for e in a.errors],
        "user_speech": [dataclasses.asdict(s) for s in a.user_speech],
        "assistant_speech": [dataclasses.asdict(s) for s in a.assistant_speech],
        "entries": [dataclasses.asdict(e) for e in a.entries],
        "metrics": dataclasses.asdict(m) if m is not None else None,
    }
