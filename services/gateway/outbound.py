"""The bounded queue of what one Connect stream has yet to send to its client.

A client that stops reading must not grow the gateway: gRPC's flow control stops the stream's
writes, and everything the session produces meanwhile (assistant audio above all) would pile up
here. Past the bound (in bytes or in messages, whichever comes first) the queue drops what it
holds, refuses anything more and sets `overflowed`; the Connect handler then ends the stream
with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import os

from services.api.earpiece.v1 import session_pb2 as pb


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


MAX_OUTBOUND_BYTES = _env_int("EARPIECE_OUTBOUND_MAX_BYTES", 8 * 1024 * 1024)
"""Bytes a stream may hold unsent: 8 MiB is ~85 s of 24 kHz PCM16 assistant audio."""

MAX_OUTBOUND_MESSAGES = _env_int("EARPIECE_OUTBOUND_MAX_MESSAGES", 20_000)


class OutboundQueue(asyncio.Queue[pb.ServerMessage | None]):
    """What the client receives, in order; None ends the stream."""

    def __init__(self, *, max_bytes: int | None = None, max_messages: int | None = None) -> None:
        super().__init__()
        self.max_bytes = MAX_OUTBOUND_BYTES if max_bytes is None else max_bytes
        self.max_messages = MAX_OUTBOUND_MESSAGES if max_messages is None else max_messages
        self.bytes = 0
        self.overflowed = asyncio.Event()

    def put_nowait(self, item: pb.ServerMessage | None) -> None:
        if self.overflowed.is_set():
            return
        size = 0 if item is None else item.ByteSize()
        if item is not None and (
            self.bytes + size > self.max_bytes or self.qsize() + 1 > self.max_messages
        ):
            self._overflow()
            return
        self.bytes += size
        super().put_nowait(item)

    def get_nowait(self) -> pb.ServerMessage | None:
        item = super().get_nowait()
        if item is not None:
            self.bytes -= item.ByteSize()
        return item

    def _overflow(self) -> None:
        """Frees what is queued: the client will not read it."""
        while not self.empty():
            super().get_nowait()
        self.bytes = 0
        self.overflowed.set()
        super().put_nowait(None)  # wakes a waiting reader; the stream ends
