"""How the previous holder of a session left it, read from the log by the next holder.

A holder that closes cleanly records `client.detached` (or `session.ended`). One that was
SIGKILLed records nothing: the log ends on its `client.attach` and whatever it had flushed. The
next holder records the loss before anything else: first a `gateway.void` for each seq the
client says it saw beyond the durable end (so a seq it saw never names another event), then
`gateway.lost`, naming the previous connection, the last durable seq, and the stretches of audio
whose events are durable but whose bytes are not (the writer flushes events every 50 ms and
audio in chunks of at most 250 ms), so replay and export mark them as holes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg

_LAST_HOLDER = """
SELECT kind, payload::text FROM session_events
WHERE session_id = $1
  AND kind IN ('client.attach', 'client.detached', 'session.ended', 'gateway.lost')
ORDER BY seq DESC
LIMIT 1
"""

_AUDIO_EVENTS_END = """
SELECT audio_stream, max(audio_offset + audio_length) FROM (
    SELECT audio_stream, audio_offset, audio_length FROM session_events
    WHERE session_id = $1 AND audio_stream IS NOT NULL
    ORDER BY seq DESC LIMIT 400
) recent GROUP BY audio_stream
"""

_AUDIO_STORED_END = """
SELECT stream, max(start_offset + length(data)) FROM audio_chunks
WHERE session_id = $1 GROUP BY stream
"""


@dataclass(frozen=True)
class Handover:
    previous_connection: str
    previous_gateway_queue: str
    last_durable_seq: int
    audio_holes: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {
            "previous_connection": self.previous_connection,
            "previous_gateway_queue": self.previous_gateway_queue,
            "last_durable_seq": self.last_durable_seq,
            "audio_holes": self.audio_holes,
        }


async def lost_holder(pool: asyncpg.Pool, session_id: str, *, last_seq: int) -> Handover | None:
    """The previous holder, if it left without closing; None if it closed or there was none."""
    row = await pool.fetchrow(_LAST_HOLDER, session_id)
    if row is None or row[0] != "client.attach":
        return None
    attach = json.loads(row[1])
    events_end = {r[0]: int(r[1]) for r in await pool.fetch(_AUDIO_EVENTS_END, session_id)}
    stored_end = {r[0]: int(r[1]) for r in await pool.fetch(_AUDIO_STORED_END, session_id)}
    holes = [
        {"stream": stream, "from_offset": stored_end.get(stream, 0), "to_offset": end}
        for stream, end in sorted(events_end.items())
        if end > stored_end.get(stream, 0)
    ]
    return Handover(
        previous_connection=str(attach.get("connection_id", "")),
        previous_gateway_queue=str(attach.get("gateway_queue", "")),
        last_durable_seq=last_seq,
        audio_holes=holes,
    )
