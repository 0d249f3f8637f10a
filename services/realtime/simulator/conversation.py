"""The simulated server's conversation: ordered items, their audio, and token accounting.

Kept apart from the connection logic so the rules that clients get wrong (truncation bounds,
unanswered function calls) are plain, testable state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from services.realtime.simulator.voice import BYTES_PER_MS

__all__ = ["Conversation", "ConversationEntry", "estimate_text_tokens"]

# Token accounting as the notes give it: user audio 1 token per 100 ms, assistant audio 1 per
# 50 ms; text roughly 4 characters per token.
_USER_AUDIO_MS_PER_TOKEN = 100
_ASSISTANT_AUDIO_MS_PER_TOKEN = 50
_CHARS_PER_TOKEN = 4


def estimate_text_tokens(text: str) -> int:
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


@dataclass(slots=True)
class ConversationEntry:
    """One item as the server holds it. `item` is the JSON shape last reported to the client;
    `audio` is the PCM the item carries now (assistant audio after any truncation, or the user's
    committed input)."""

    item: dict[str, Any]
    audio: bytearray = field(default_factory=bytearray)
    response_id: str | None = None

    @property
    def item_id(self) -> str:
        return str(self.item["id"])

    @property
    def audio_ms(self) -> int:
        return len(self.audio) // BYTES_PER_MS

    @property
    def is_assistant_audio(self) -> bool:
        return (
            self.item.get("type") == "message"
            and self.item.get("role") == "assistant"
            and self.response_id is not None
        )


class Conversation:
    def __init__(self) -> None:
        self._entries: list[ConversationEntry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item_id: object) -> bool:
        return any(entry.item_id == item_id for entry in self._entries)

    @property
    def last_item_id(self) -> str | None:
        return self._entries[-1].item_id if self._entries else None

    def get(self, item_id: str) -> ConversationEntry | None:
        return next((entry for entry in self._entries if entry.item_id == item_id), None)

    def append(self, entry: ConversationEntry) -> str | None:
        """Add at the end; returns the previous item's id, as events report it."""
        previous = self.last_item_id
        self._entries.append(entry)
        return previous

    def insert_after(self, entry: ConversationEntry, *, previous_item_id: str | None) -> None:
        """`previous_item_id` None means at the very start (the API's `root`)."""
        if previous_item_id is None:
            self._entries.insert(0, entry)
            return
        index = next(i for i, e in enumerate(self._entries) if e.item_id == previous_item_id)
        self._entries.insert(index + 1, entry)

    def delete(self, item_id: str) -> bool:
        before = len(self._entries)
        self._entries = [entry for entry in self._entries if entry.item_id != item_id]
        return len(self._entries) != before

    def items(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(entry.item) for entry in self._entries]

    def function_call_ids(self) -> list[str]:
        return [
            str(entry.item["call_id"])
            for entry in self._entries
            if entry.item.get("type") == "function_call" and entry.item.get("call_id")
        ]

    def function_output_call_ids(self) -> list[str]:
        return [
            str(entry.item["call_id"])
            for entry in self._entries
            if entry.item.get("type") == "function_call_output"
        ]

    def unanswered_call_ids(self) -> list[str]:
        """Function calls with no `function_call_output`: the pitfall where a call is left
        hanging in the model's context."""
        answered = set(self.function_output_call_ids())
        return [call_id for call_id in self.function_call_ids() if call_id not in answered]

    def input_token_usage(self, *, instructions: str) -> dict[str, int]:
        """What a response is billed for input: the whole conversation, every time."""
        text_tokens = estimate_text_tokens(instructions)
        audio_tokens = 0
        for entry in self._entries:
            item = entry.item
            if item.get("type") == "message":
                for part in item.get("content", []):
                    text_tokens += estimate_text_tokens(str(part.get("text") or ""))
                if item.get("role") == "assistant":
                    audio_tokens += entry.audio_ms // _ASSISTANT_AUDIO_MS_PER_TOKEN
                else:
                    audio_tokens += entry.audio_ms // _USER_AUDIO_MS_PER_TOKEN
            elif item.get("type") == "function_call":
                text_tokens += estimate_text_tokens(str(item.get("arguments", "")))
            elif item.get("type") == "function_call_output":
                text_tokens += estimate_text_tokens(str(item.get("output", "")))
        return {"text_tokens": text_tokens, "audio_tokens": audio_tokens}


def output_token_usage(*, audio_ms: int, transcript: str, arguments: str) -> dict[str, int]:
    return {
        "text_tokens": estimate_text_tokens(transcript) + estimate_text_tokens(arguments),
        "audio_tokens": audio_ms // _ASSISTANT_AUDIO_MS_PER_TOKEN,
    }
