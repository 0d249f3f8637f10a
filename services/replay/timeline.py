"""A session's timeline as text, from its event log alone (what `make demo` prints).

The analysis is `services.replay.analysis`; this renders it the way `earpiece replay` does,
into a string (colour only when the caller prints it to a terminal itself)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterable
from dataclasses import dataclass

from rich.console import Console

from services.replay.analysis import Analysis, Analyzer
from services.store.events import StoredEvent


@dataclass
class Timeline:
    analysis: Analysis

    def render(self, *, width: int = 120) -> str:
        from services.replay.cli import render_timeline

        out = io.StringIO()
        render_timeline(Console(file=out, width=width, color_system=None), self.analysis)
        return out.getvalue().rstrip()


async def build_timeline(events: AsyncIterable[StoredEvent]) -> Timeline:
    """Reads the events once, in seq order, into the session's analysis."""
    analyzer = Analyzer()
    async for event in events:
        analyzer.feed(event)
    return Timeline(analyzer.finish())
