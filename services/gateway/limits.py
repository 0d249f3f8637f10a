"""gRPC server options: message size limits and keepalive.

- Requests are small (a 64 KiB prompt, a 32 KiB audio frame, a 16 KiB screen state), so the
  server refuses any message over 1 MiB before it is decoded.
- Replies stay under gRPC's default 4 MiB (ListSessions pages by size, events are one each).
- The server pings every client every 5 s and drops one that has not answered within 5 s: a
  dead or frozen client (its process gone or stopped, its network cut) is detached within
  about 10 s, the same bound as a dead gateway's lease, and takes the same path (detached,
  idle timeout). A client that pings more often than every 10 s without data is told to go
  away (GOAWAY) rather than being allowed to keep the server busy.
"""

from __future__ import annotations

MAX_RECEIVE_BYTES = 1024 * 1024
MAX_SEND_BYTES = 4 * 1024 * 1024

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    ("grpc.max_send_message_length", MAX_SEND_BYTES),
    ("grpc.keepalive_time_ms", 5_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Keep pinging a stream that is quiet (a silent client sends no data for minutes).
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.ping_timeout_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 3),
    ("grpc.max_concurrent_streams", 1_000),
]
