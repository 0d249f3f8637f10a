"""A new model link's conversation, rebuilt from the session's event log alone.

One path for every cause (first link of a re-attach, a gateway crash, a link drop,
`session_expired`, a rotation before the model's cap). The plan holds, in the order they
happened:

- the user's turns as text: their transcripts, and what they typed. Text rather than the
  recorded audio: it is what the model's own transcription heard, it costs a fraction of the
  tokens (user audio is 1 token per 100 ms), and it sends in milliseconds instead of re-uploading
  every second of speech;
- the assistant's turns as the user heard them: cut at barge-in (`decision.truncated`), gone if
  the user heard none of it (`decision.item_deleted`), cut where a stream broke mid-answer;
- function calls, each followed by its output once the log has its outcome;
- the latest screen state as one `Context update:` item, last.

A token budget bounds it: the oldest items go first, and a short recap item says that the
conversation continues, so the model neither restarts nor re-introduces itself. Calls still
held have their function_call items in the plan; their outputs go in once their gate opens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.gateway.turns import context_item
from workflows.messages import ToolCall

# A conservative 4 characters a token, the usual estimate for English text.
CHARS_PER_TOKEN = 4
DEFAULT_TOKEN_BUDGET = 12_000
RECAP = (
    "(The conversation continues from earlier; older turns are summarised away. Carry on where "
    "it left off, without greeting the user again.)"
)

# The kinds the plan reads. Migrations 006 and 007 keep partial indexes on exactly these, so a
# rebuild reads a few thousand rows of an hour-long session, not its half-million audio events.
REBUILD_KINDS = (
    "client.text",
    "client.screen_state",
    "model.server.input_audio_buffer.committed",
    "model.server.conversation.item.input_audio_transcription.completed",
    "model.server.response.output_item.added",
    "model.server.response.output_audio_transcript.done",
    "model.server.response.output_audio_transcript.delta",
    "model.server.response.function_call_arguments.done",
    "decision.truncated",
    "decision.item_deleted",
    "decision.playback_done",
    "decision.tool_output",
    "decision.tool_dropped",
)


@dataclass(frozen=True)
class LogEvent:
    seq: int
    kind: str
    payload: dict[str, Any]


@dataclass
class RebuildPlan:
    items: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    tokens: int = 0
    closed_calls: set[str] = field(default_factory=set)
    recorded_outcomes: set[str] = field(default_factory=set)
    # Calls asked for with no outcome in the log yet (held, or orphaned by a crash).
    open_calls: set[str] = field(default_factory=set)
    calls: dict[str, ToolCall] = field(default_factory=dict)
    context_digest: str | None = None
    context_item_id: str | None = None

    def events(self) -> list[dict[str, Any]]:
        return [{"type": "conversation.item.create", "item": item} for item in self.items]

    def held_calls(self) -> list[ToolCall]:
        return [c for cid, c in self.calls.items() if cid in self.open_calls]


@dataclass
class _Entry:
    order: int
    item: dict[str, Any] | None = None
    # An assistant message's text, before it is cut to what was heard.
    text: str = ""
    heard_fraction: float = 1.0
    deleted: bool = False
    final: bool = False


def plan(events: Iterable[LogEvent], *, token_budget: int = DEFAULT_TOKEN_BUDGET) -> RebuildPlan:
    """The conversation a new link must hold, from the log's events in seq order."""
    entries: dict[str, _Entry] = {}  # by item id / call id / a synthetic key
    response_items: dict[str, list[str]] = {}
    calls: dict[str, dict[str, Any]] = {}
    result = RebuildPlan()
    screen: dict[str, Any] | None = None
    screen_digest: str | None = None
    for e in events:
        p = e.payload
        match e.kind:
            case "client.text":
                entries[f"text:{e.seq}"] = _Entry(e.seq, _user_text(str(p.get("text", ""))))
            case "client.screen_state":
                screen, screen_digest = p.get("state"), p.get("hash")
            case "model.server.input_audio_buffer.committed":
                # The user's turn has its place here; its words arrive with the transcription.
                entries.setdefault(f"user:{p.get('item_id')}", _Entry(e.seq))
            case "model.server.conversation.item.input_audio_transcription.completed":
                entry = entries.setdefault(f"user:{p.get('item_id')}", _Entry(e.seq))
                entry.item = _user_text(str(p.get("transcript", "")))
            case "model.server.response.output_item.added":
                item = p.get("item", {})
                if item.get("type") == "message":
                    item_id = str(item.get("id", ""))
                    entries[f"asst:{item_id}"] = _Entry(e.seq)
                    response_items.setdefault(str(p.get("response_id", "")), []).append(item_id)
                elif item.get("type") == "function_call":
                    call_id = str(item.get("call_id", ""))
                    calls[call_id] = {"name": item.get("name", ""), "order": e.seq}
            case "model.server.response.output_audio_transcript.done":
                entry = entries.setdefault(f"asst:{p.get('item_id')}", _Entry(e.seq))
                entry.text, entry.final = str(p.get("transcript", "")), True
            case "model.server.response.output_audio_transcript.delta":
                # An answer cut off by a crash or a drop never gets its `done`: its deltas are
                # what was said (and, paced with the audio, about what was heard).
                entry = entries.setdefault(f"asst:{p.get('item_id')}", _Entry(e.seq))
                if not entry.final:
                    entry.text += str(p.get("delta", ""))
            case "model.server.response.function_call_arguments.done":
                call_id = str(p.get("call_id", ""))
                order = calls.get(call_id, {}).get("order", e.seq)
                entries[f"call:{call_id}"] = _Entry(
                    order,
                    {
                        "type": "function_call",
                        "call_id": call_id,
                        "name": str(p.get("name", "")),
                        "arguments": str(p.get("arguments", "")),
                    },
                )
                result.open_calls.add(call_id)
                result.calls[call_id] = ToolCall(
                    call_id=call_id,
                    name=str(p.get("name", "")),
                    arguments=str(p.get("arguments", "")),
                    response_id=str(p.get("response_id", "")),
                    seq=e.seq,
                )
            case "decision.truncated":
                cut = entries.get(f"asst:{p.get('item_id')}")
                generated = max(1, int(p.get("generated_ms") or 1))
                if cut is not None:
                    cut.heard_fraction = min(1.0, int(p.get("audio_end_ms", 0)) / generated)
            case "decision.item_deleted":
                gone = entries.get(f"asst:{p.get('item_id')}")
                if gone is not None:
                    gone.deleted = True
            case "decision.playback_done":
                # A stream that broke mid-answer: the user heard only part of the last item.
                audio_ms, heard_ms = int(p.get("audio_ms") or 0), int(p.get("heard_ms") or 0)
                if p.get("decided_by") == "detached" and audio_ms > 0:
                    for item_id in response_items.get(str(p.get("response_id", "")), [])[-1:]:
                        broken = entries.get(f"asst:{item_id}")
                        if broken is not None:
                            broken.heard_fraction = min(broken.heard_fraction, heard_ms / audio_ms)
            case "decision.tool_output" | "decision.tool_dropped":
                call_id = str(p.get("call_id", ""))
                result.recorded_outcomes.add(call_id)
                result.open_calls.discard(call_id)
                if f"call:{call_id}" in entries:
                    entries[f"out:{call_id}"] = _Entry(
                        e.seq,
                        {
                            "type": "function_call_output",
                            "call_id": call_id,
                            "output": str(p.get("output", "")),
                        },
                    )
                    result.closed_calls.add(call_id)
            case _:
                pass
    items = [
        item for entry in sorted(entries.values(), key=lambda x: x.order) if (item := _item(entry))
    ]
    _fit(items, token_budget, result)
    if screen is not None and screen_digest is not None:
        result.context_item_id = f"ctx_rb_{screen_digest}"
        result.items.append(context_item(screen, item_id=result.context_item_id)["item"])
        result.context_digest = screen_digest
    result.tokens = sum(_tokens(i) for i in result.items)
    return result


def _item(entry: _Entry) -> dict[str, Any] | None:
    if entry.item is not None:
        return entry.item
    if entry.deleted or not entry.text:
        return None
    text = _cut(entry.text, entry.heard_fraction)
    if not text:
        return None
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def _cut(text: str, fraction: float) -> str:
    """The words the user heard: the transcript cut at the fraction of the audio played."""
    if fraction >= 1.0:
        return text
    words = text.split()
    kept = words[: int(len(words) * max(0.0, fraction))]
    return " ".join(kept) + ("…" if kept else "")


def _fit(items: list[dict[str, Any]], budget: int, result: RebuildPlan) -> None:
    """Oldest first out, never splitting a call from its output; a recap if anything went."""
    total = sum(_tokens(i) for i in items)
    start = 0
    while total > budget and start < len(items):
        total -= _tokens(items[start])
        start += 1
        # An output without its call would be refused: drop the pair together.
        while start < len(items) and items[start].get("type") == "function_call_output":
            total -= _tokens(items[start])
            start += 1
    kept = items[start:]
    result.dropped = start
    if start:
        kept.insert(0, _user_text(RECAP))
        for item in items[:start]:
            if item.get("type") == "function_call_output":
                result.closed_calls.discard(str(item.get("call_id")))
    result.items = kept


def _tokens(item: dict[str, Any]) -> int:
    return max(1, len(json.dumps(item)) // CHARS_PER_TOKEN)


def _user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# ---- reading the log ----

# The kinds are literals (never user input) so the planner can prove the partial index of
# migration 006 applies; a bound array parameter would hide that and scan every audio row.
_READ = f"""
SELECT seq, kind, payload::text FROM session_events
WHERE session_id = $1 AND kind IN ({", ".join(f"'{k}'" for k in REBUILD_KINDS)})
ORDER BY seq
"""


async def load_plan(
    pool: asyncpg.Pool, session_id: str, *, token_budget: int = DEFAULT_TOKEN_BUDGET
) -> RebuildPlan:
    rows = await pool.fetch(_READ, session_id)
    return plan(
        (LogEvent(row[0], row[1], json.loads(row[2])) for row in rows), token_budget=token_budget
    )


async def open_calls(pool: asyncpg.Pool, session_id: str) -> list[ToolCall]:
    """Calls the log holds with no outcome yet, in the order they were asked for."""
    return (await load_plan(pool, session_id)).held_calls()
