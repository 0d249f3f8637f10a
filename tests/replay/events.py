"""Synthetic event logs for the pure analysis tests: `Log().at(ms).add(kind, payload)`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from services.store.events import AudioRef, StoredEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Log:
    def __init__(self, session_id: str = "s1") -> None:
        self.session_id = session_id
        self.events: list[StoredEvent] = []
        self.now_ms = 0
        self.offsets = {"input": 0, "output": 0}

    def at(self, ms: int) -> Log:
        self.now_ms = ms
        return self

    def add(self, kind: str, payload: dict[str, Any] | None = None, **audio: Any) -> Log:
        ref = None
        if audio:
            stream, length = audio["stream"], audio["length"]
            ref = AudioRef(stream, self.offsets[stream], length)
            self.offsets[stream] += length
        self.events.append(
            StoredEvent(
                session_id=self.session_id,
                seq=len(self.events) + 1,
                event_id=f"e{len(self.events) + 1}",
                kind=kind,
                source="test",
                producer_time=None,
                receive_time=T0 + timedelta(milliseconds=self.now_ms),
                tx=1,
                position=len(self.events) + 1,
                client_event_id=None,
                audio=ref,
                payload_json=json.dumps(payload or {}),
            )
        )
        return self

    def user_audio(self, start_ms: int, ms: int) -> Log:
        """Frames of 20 ms arriving in real time from start_ms."""
        for t in range(start_ms, start_ms + ms, 20):
            self.at(t + 20).add("client.audio", stream="input", length=960)
        return self

    def assistant_audio(self, start_ms: int, ms: int, response_id: str, burst: bool = True) -> Log:
        """Deltas of 100 ms, all at once (burst, as the model sends) or in real time."""
        for i, _ in enumerate(range(0, ms, 100)):
            self.at(start_ms if burst else start_ms + i * 100).add(
                "model.server.response.output_audio.delta",
                {"response_id": response_id},
                stream="output",
                length=4800,
            )
        return self

    def response(self, at: int, rid: str, item: str) -> Log:
        self.at(at).add("decision.response_requested", {"reason": "turn_committed"})
        self.add("model.client.response.create", {"type": "response.create"})
        self.add("model.server.response.created", {"response": {"id": rid}})
        self.add(
            "model.server.response.output_item.added",
            {"response_id": rid, "item": {"type": "message", "id": item}},
        )
        return self

    def speech(self, start: int, stop: int, item: str, transcript: str) -> Log:
        self.at(start).add("model.server.input_audio_buffer.speech_started", {"item_id": item})
        self.at(stop).add("model.server.input_audio_buffer.speech_stopped", {"item_id": item})
        self.add("model.server.input_audio_buffer.committed", {"item_id": item})
        self.add(
            "model.server.conversation.item.input_audio_transcription.completed",
            {"item_id": item, "transcript": transcript},
        )
        return self

    def done(self, at: int, rid: str, transcript: str, status: str = "completed",
             usage: dict[str, Any] | None = None) -> Log:  # fmt: skip
        self.at(at).add(
            "model.server.response.output_audio_transcript.done",
            {"response_id": rid, "transcript": transcript},
        )
        self.add(
            "model.server.response.done",
            {"response": {"id": rid, "status": status, "usage": usage or {}}},
        )
        return self


def two_turn_log() -> Log:
    """Turn 1: a 2 s answer with a tool call, played out. Turn 2 cuts a 3 s answer at 1 s."""
    log = Log()
    log.at(0).add("session.started", {"tenant_id": "t", "prompt_hash": "abc123", "persona": "Maya"})
    log.at(10).add("client.screen_state", {"state": {"step": 1}, "hash": "h1"})
    log.user_audio(100, 1000)
    log.speech(100, 1100, "u1", "what is a fraction")
    log.at(1150).add("decision.context_injected", {"item_id": "ctx_1", "hash": "h1"})
    log.response(1150, "r1", "a1")
    log.assistant_audio(1400, 2000, "r1")
    log.at(1500).add(
        "model.server.response.function_call_arguments.done",
        {"response_id": "r1", "call_id": "c1", "name": "highlight", "arguments": "{}"},
    )
    usage = {
        "input_tokens": 1000,
        "output_tokens": 200,
        "input_token_details": {
            "text_tokens": 800,
            "audio_tokens": 200,
            "cached_tokens_details": {"text_tokens": 500},
        },
        "output_token_details": {"text_tokens": 50, "audio_tokens": 150},
    }
    log.done(1600, "r1", "A fraction is a part of a whole.", usage=usage)
    log.at(1600).add("decision.tool_held", {"call_id": "c1", "name": "highlight", "response": "r1"})
    log.at(3400).add("decision.playback_done", {"response_id": "r1", "estimated": False})
    log.at(3500).add(
        "decision.tool_output",
        {"call_id": "c1", "name": "highlight", "outcome": "succeeded", "output": "ok",
         "started_at": (T0 + timedelta(milliseconds=3450)).isoformat()},
    )  # fmt: skip
    log.user_audio(5000, 800)
    log.speech(5000, 5800, "u2", "and two thirds")
    log.response(5850, "r2", "a2")
    log.assistant_audio(6000, 3000, "r2")
    log.at(6500).add("model.link_lost", {"reason": "socket closed"})
    log.at(6600).add("model.link_rebuilt", {"cause": "link_lost", "items_replayed": 4})
    log.at(7000).add("model.server.input_audio_buffer.speech_started", {"item_id": "u3"})
    log.at(7000).add(
        "decision.truncated",
        {"item_id": "a2", "audio_end_ms": 1000, "generated_ms": 3000, "heard_from": "reported"},
    )
    log.at(7000).add("decision.playback_done", {"response_id": "r2", "interrupted": True})
    log.done(7050, "r2", "Two thirds means two of three equal parts of a whole", "cancelled")
    log.at(7100).add("model.server.error", {"error": {"code": "rate_limit", "message": "slow"}})
    log.at(7100).add("decision.model_error_classified", {"code": "rate_limit", "severity": "x"})
    log.at(7200).add("decision.some_new_kind", {"call_id": "c1", "name": "highlight"})
    log.at(7300).add("totally.unknown", {"whatever": 1})
    log.at(7400).add("session.ended", {"reason": "done"})
    return log
