"""Token prices, for a session's cost from its `response.done` usage.

The table is configuration: `EARPIECE_PRICES` names a JSON or YAML file mapping model names to
USD per million tokens, e.g.

    gpt-realtime:
      text_input: 4.00
      text_cached_input: 0.40
      text_output: 16.00
      audio_input: 32.00
      audio_cached_input: 0.40
      audio_output: 64.00

Without it the defaults below (OpenAI's list prices for gpt-realtime when this was written)
are used. Cached tokens are priced apart from the uncached rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PRICE_KEYS = (
    "text_input",
    "text_cached_input",
    "text_output",
    "audio_input",
    "audio_cached_input",
    "audio_output",
)

DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-realtime": {
        "text_input": 4.00,
        "text_cached_input": 0.40,
        "text_output": 16.00,
        "audio_input": 32.00,
        "audio_cached_input": 0.40,
        "audio_output": 64.00,
    },
    "gpt-realtime-mini": {
        "text_input": 0.60,
        "text_cached_input": 0.06,
        "text_output": 2.40,
        "audio_input": 10.00,
        "audio_cached_input": 0.30,
        "audio_output": 20.00,
    },
}


def _int(mapping: Any, key: str) -> int:
    if not isinstance(mapping, Mapping):
        return 0
    value = mapping.get(key, 0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class PriceTable:
    """USD per million tokens, per model; `model` picks the row used for a session."""

    models: Mapping[str, Mapping[str, float]]
    model: str = "gpt-realtime"

    @classmethod
    def default(cls) -> PriceTable:
        return cls(DEFAULT_PRICES)

    @classmethod
    def from_file(cls, path: str | Path, *, model: str = "gpt-realtime") -> PriceTable:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a price table maps model names to prices")
        models: dict[str, dict[str, float]] = {}
        for name, row in data.items():
            if not isinstance(row, dict) or not set(row) <= set(PRICE_KEYS):
                raise ValueError(f"{path}: {name}: prices are {', '.join(PRICE_KEYS)}")
            models[str(name)] = {k: float(v) for k, v in row.items()}
        return cls(models, model)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PriceTable:
        env = os.environ if env is None else env
        model = env.get("OPENAI_REALTIME_MODEL") or "gpt-realtime"
        path = env.get("EARPIECE_PRICES")
        return cls.from_file(path, model=model) if path else cls(DEFAULT_PRICES, model)

    def row(self) -> Mapping[str, float]:
        return self.models.get(self.model) or next(iter(self.models.values()), {})

    def cost(self, usage: Mapping[str, Any]) -> float:
        """USD for one response's usage (the `usage` object of `response.done`)."""
        row = self.row()
        inp = usage.get("input_token_details") or {}
        out = usage.get("output_token_details") or {}
        cached = inp.get("cached_tokens_details") or {} if isinstance(inp, Mapping) else {}
        text_in, audio_in = _int(inp, "text_tokens"), _int(inp, "audio_tokens")
        text_cached, audio_cached = _int(cached, "text_tokens"), _int(cached, "audio_tokens")
        if not text_in and not audio_in:
            text_in = _int(usage, "input_tokens")
        text_out, audio_out = _int(out, "text_tokens"), _int(out, "audio_tokens")
        if not text_out and not audio_out:
            text_out = _int(usage, "output_tokens")
        total = (
            max(0, text_in - text_cached) * row.get("text_input", 0.0)
            + text_cached * row.get("text_cached_input", 0.0)
            + max(0, audio_in - audio_cached) * row.get("audio_input", 0.0)
            + audio_cached * row.get("audio_cached_input", 0.0)
            + text_out * row.get("text_output", 0.0)
            + audio_out * row.get("audio_output", 0.0)
        )
        return total / 1_000_000
