"""A small async client for Earpiece's gRPC API.

Every call carries an API key as `authorization: Bearer <key>`: `api_key=`, else the
EARPIECE_API_KEY variable, else the embedded default's development key (`.earpiece/dev-key`, or
`$EARPIECE_STATE_DIR/dev-key`). TLS: `tls=True` (system roots) or `tls=TlsConfig(...)`, or the
EARPIECE_TLS_CA variable (a CA file to trust; EARPIECE_TLS_CLIENT_CERT/KEY add a client cert).

async with EarpieceClient.connect("127.0.0.1:50051") as client:
    started = await client.start_session(tenant_id="acme", instructions=BRIEFING)
    async with client.attach(started.session.session_id) as stream:
        await stream.send_screen_state({"screen": "settings"})
        await stream.stream_wav("question.wav")
        async for message in stream.messages():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
import wave
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.api.earpiece.v1 import replay_pb2, replay_pb2_grpc, session_pb2, session_pb2_grpc

DEV_KEY_FILE = "dev-key"

SAMPLE_RATE = 24_000
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # PCM16 mono
# The gateway takes at most 32 KiB of audio per message (682 ms); batches stay well inside it.
MAX_BATCH_MS = 500


def read_wav_frames(path: str | Path, *, frame_ms: int = 20) -> Iterator[bytes]:
    """Frames of a 24 kHz mono 16-bit WAV file, `frame_ms` each (the last may be shorter)."""
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError(
                f"{path}: need 24 kHz mono 16-bit PCM, got {wav.getframerate()} Hz, "
                f"{wav.getnchannels()} channel(s), {8 * wav.getsampwidth()}-bit"
            )
        while chunk := wav.readframes(SAMPLE_RATE * frame_ms // 1000):
            yield chunk


def _now() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


class SessionStream:
    """One Connect stream, attached to a session."""

    def __init__(self, call: Any, session_id: str, *, batch_ms: int = 0) -> None:
        self._batch_bytes = self.batch_bytes(batch_ms=batch_ms)
        self._call = call
        self.session_id = session_id
        self.attached: session_pb2.Attached | None = None
        # gRPC allows one write in flight per call; a backend sends audio from one task and
        # playback reports from another, so writes queue here (in call order) instead of failing.
        self._write_lock = asyncio.Lock()
        # What a re-attach needs: the highest seq seen, the durable watermark, and the messages
        # sent that are not yet durable (by client event id, in the order sent).
        self.last_seen_seq = 0
        self.durable_seq = 0
        self.pending: dict[str, session_pb2.ClientMessage] = {}
        self._acked: dict[str, int] = {}
        # Audio batching (opt-in): small microphone frames wait here until `batch_ms` of audio
        # is in, then go as one message with one client event id, chosen when the batch began.
        self._batch = bytearray()
        self._batch_id = ""
        self._batch_sent_at = Timestamp()
        self._batch_timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    @staticmethod
    def batch_bytes(*, batch_ms: int) -> int:
        """The bytes in a batch of `batch_ms`; a ValueError for a batch the gateway would refuse."""
        if not 0 <= batch_ms <= MAX_BATCH_MS:
            raise ValueError(f"batch_ms must be 0 (off) to {MAX_BATCH_MS}, got {batch_ms}")
        return batch_ms * BYTES_PER_MS

    async def send(self, message: session_pb2.ClientMessage) -> str:
        """Sends one message; safe to call from several tasks at once (writes are serialised,
        in the order of the calls). Audio waiting in a batch goes first, so order is kept.
        Every message but audio is kept until it is durable, to be resent after a re-attach
        (audio is not: speech resent late would be heard as new)."""
        if not message.client_event_id:
            message.client_event_id = uuid.uuid4().hex
        if not message.HasField("sent_at"):
            message.sent_at.CopyFrom(_now())
        if message.WhichOneof("body") not in ("audio", "attach"):
            self.pending[message.client_event_id] = message
        await self._write([*self._take_batch(), message])
        return message.client_event_id

    async def _write(self, messages: list[session_pb2.ClientMessage]) -> None:
        # Messages are taken from the batch before this await and asyncio.Lock wakes waiters
        # first come, first served, so the wire order is the order of the calls.
        async with self._write_lock:
            for message in messages:
                await self._call.write(message)

    def _track(self, message: session_pb2.ServerMessage) -> None:
        self.last_seen_seq = max(self.last_seen_seq, message.seq)
        self.durable_seq = max(self.durable_seq, message.durable_seq)
        if message.WhichOneof("body") == "ack":
            if message.ack.duplicate:
                self.pending.pop(message.ack.client_event_id, None)
            else:
                self._acked[message.ack.client_event_id] = message.seq
        for cid, seq in list(self._acked.items()):
            if seq <= self.durable_seq:
                del self._acked[cid]
                self.pending.pop(cid, None)

    async def send_audio(self, pcm16: bytes, *, client_event_id: str = "") -> str:
        """Sends a microphone frame; returns the client event id of the message carrying it
        (with batching: the batch it starts in, which may not have been sent yet)."""
        if not self._batch_bytes:
            return await self.send(
                session_pb2.ClientMessage(
                    client_event_id=client_event_id, audio=session_pb2.AudioFrame(pcm16=pcm16)
                )
            )
        if client_event_id:
            raise ValueError("with batch_ms, a batch's client event id is the library's to pick")
        if not self._batch:
            self._begin_batch()
        carried_by = self._batch_id
        self._batch += pcm16
        full: list[session_pb2.ClientMessage] = []
        while len(self._batch) >= self._batch_bytes:
            full.append(self._batch_message(bytes(self._batch[: self._batch_bytes])))
            del self._batch[: self._batch_bytes]
            if self._batch:
                self._begin_batch()
        if not self._batch:
            self._disarm()
        if full:
            await self._write(full)
        return carried_by

    async def flush_audio(self) -> None:
        """Sends the audio waiting in a batch now (batch_ms): when the microphone stops.
        `stream_audio`, every non-audio message and `close` do this by themselves."""
        if batch := self._take_batch():
            await self._write(batch)

    def _begin_batch(self) -> None:
        self._batch_id = uuid.uuid4().hex
        self._batch_sent_at = _now()
        self._disarm()
        # A batch not filled within batch_ms of its first frame (the microphone stopped or
        # stalled) goes as it is: batching never holds audio back longer than that.
        loop = asyncio.get_running_loop()
        self._batch_timer = loop.call_later(self._batch_bytes / BYTES_PER_MS / 1000, self._due)

    def _disarm(self) -> None:
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None

    def _due(self) -> None:
        self._batch_timer = None
        task = asyncio.get_running_loop().create_task(self._flush_quietly())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_quietly(self) -> None:
        # A failure means the stream has ended: its reader gets the status, the next send the
        # error; a timer has nobody to tell.
        with contextlib.suppress(
            grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError
        ):
            await self.flush_audio()

    def _batch_message(self, pcm16: bytes) -> session_pb2.ClientMessage:
        return session_pb2.ClientMessage(
            client_event_id=self._batch_id,
            sent_at=self._batch_sent_at,  # the producer time of the batch's first frame
            audio=session_pb2.AudioFrame(pcm16=pcm16),
        )

    def _take_batch(self) -> list[session_pb2.ClientMessage]:
        """The audio waiting in a batch, as its message (none if nothing waits)."""
        if not self._batch:
            return []
        message = self._batch_message(bytes(self._batch))
        self._batch.clear()
        self._disarm()
        return [message]

    async def stream_audio(
        self, frames: Iterable[bytes] | AsyncIterable[bytes], *, realtime: bool = True
    ) -> int:
        """Sends frames in order, paced at real time unless `realtime` is False; returns bytes.
        A batch's remainder is sent when the frames run out."""
        sent = 0
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def each() -> AsyncIterator[bytes]:
            if isinstance(frames, AsyncIterable):
                async for f in frames:
                    yield f
            else:
                for f in frames:
                    yield f

        async for frame in each():
            await self.send_audio(frame)
            sent += len(frame)
            if realtime:
                due = start + sent / BYTES_PER_MS / 1000
                await asyncio.sleep(max(0.0, due - loop.time()))
        await self.flush_audio()
        return sent

    async def stream_wav(self, path: str | Path, *, realtime: bool = True) -> int:
        return await self.stream_audio(read_wav_frames(path), realtime=realtime)

    async def send_screen_state(self, state: dict[str, Any], *, client_event_id: str = "") -> str:
        return await self.send(
            session_pb2.ClientMessage(
                client_event_id=client_event_id,
                screen_state=session_pb2.ScreenState(json=json.dumps(state)),
            )
        )

    async def send_text(self, text: str, *, client_event_id: str = "") -> str:
        return await self.send(
            session_pb2.ClientMessage(
                client_event_id=client_event_id, text=session_pb2.UserText(text=text)
            )
        )

    async def report_playback(
        self, response_id: str, *, played_ms: int, finished: bool, client_event_id: str = ""
    ) -> str:
        return await self.send(
            session_pb2.ClientMessage(
                client_event_id=client_event_id,
                playback=session_pb2.PlaybackReport(
                    response_id=response_id, played_ms=played_ms, finished=finished
                ),
            )
        )

    async def receive(self) -> session_pb2.ServerMessage | None:
        """The next server message, or None when the server has ended the stream."""
        message = await self._call.read()
        if message is grpc.aio.EOF:  # type: ignore[attr-defined]
            return None
        assert isinstance(message, session_pb2.ServerMessage)
        self._track(message)
        return message

    async def messages(self) -> AsyncIterator[session_pb2.ServerMessage]:
        while (message := await self.receive()) is not None:
            yield message

    async def done_writing(self) -> None:
        """Half-closes the stream after what is batched or queued to be written."""
        await self.flush_audio()
        async with self._write_lock:  # behind a timer's flush that is waiting for its turn
            await self._call.done_writing()

    async def close(self, *, wait_s: float = 10.0) -> list[session_pb2.ServerMessage]:
        """Half-closes the stream and waits until the server has recorded everything and ended
        it; returns the messages that were still in flight."""
        if self._call.done():
            return []
        await self.done_writing()
        rest: list[session_pb2.ServerMessage] = []
        try:
            async with asyncio.timeout(wait_s):
                rest = [m async for m in self.messages()]
        except (TimeoutError, grpc.aio.AioRpcError):
            pass
        return rest

    def cancel(self) -> None:
        self._disarm()
        self._call.cancel()


def default_api_key(state_dir: str | Path | None = None) -> str | None:
    """EARPIECE_API_KEY, else the development key the embedded default wrote into the state
    folder (`state_dir`, else EARPIECE_STATE_DIR, else .earpiece/), else None."""
    if key := os.environ.get("EARPIECE_API_KEY", "").strip():
        return key
    if state_dir is None:
        from services.runtime.config import PROJECT_ROOT

        state_dir = os.environ.get("EARPIECE_STATE_DIR") or PROJECT_ROOT / ".earpiece"
    try:
        return (Path(state_dir) / DEV_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """Files for a TLS channel: the CA to trust (None: the system's roots), and a client
    certificate and key for servers that verify clients (mTLS)."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name: str | None = None  # when the address is not a name in the certificate

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> TlsConfig | None:
        e = os.environ if env is None else env
        if not e.get("EARPIECE_TLS_CA"):
            return None
        return cls(
            ca_file=e["EARPIECE_TLS_CA"],
            cert_file=e.get("EARPIECE_TLS_CLIENT_CERT") or None,
            key_file=e.get("EARPIECE_TLS_CLIENT_KEY") or None,
            server_name=e.get("EARPIECE_TLS_SERVER_NAME") or None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


class _Bearer:
    """Adds `authorization: Bearer <key>` to a call's metadata (plaintext channels too, where
    gRPC call credentials would not be sent)."""

    def __init__(self, api_key: str) -> None:
        self._metadata = ("authorization", f"Bearer {api_key}")

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._metadata)
        with_key = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(with_key, request)


# grpc.aio files each interceptor under one kind of call only, so there is one per kind.
class _BearerUnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _Bearer._call  # type: ignore[assignment]


class _BearerUnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _Bearer._call  # type: ignore[assignment]


class _BearerStreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _Bearer._call  # type: ignore[assignment]


class _BearerStreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _Bearer._call  # type: ignore[assignment]


def bearer_interceptors(api_key: str) -> list[Any]:
    """Client interceptors that send `api_key` with every call, for a grpc.aio channel."""
    kinds = (_BearerUnaryUnary, _BearerUnaryStream, _BearerStreamUnary, _BearerStreamStream)
    return [kind(api_key) for kind in kinds]


def authorized_channel(
    address: str, *, api_key: str | None = None, tls: TlsConfig | bool | None = None
) -> grpc.aio.Channel:
    """A channel whose every call carries the API key (`api_key`; None: `default_api_key()`;
    "": no key, for health checks only, as every Earpiece RPC answers UNAUTHENTICATED); TLS
    from `tls`, else from TlsConfig.from_env()."""
    key = default_api_key() if api_key is None else api_key
    config = tls if tls is not None else TlsConfig.from_env()
    interceptors = bearer_interceptors(key) if key else []
    if not config:
        return grpc.aio.insecure_channel(address, interceptors=interceptors)
    settings = config if isinstance(config, TlsConfig) else TlsConfig()
    options = []
    if settings.server_name:
        options.append(("grpc.ssl_target_name_override", settings.server_name))
    return grpc.aio.secure_channel(
        address, settings.credentials(), options=options, interceptors=interceptors
    )


class EarpieceClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.sessions = session_pb2_grpc.SessionServiceStub(channel)
        self.replay = replay_pb2_grpc.ReplayServiceStub(channel)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, address: str, *, api_key: str | None = None, tls: TlsConfig | bool | None = None
    ) -> AsyncIterator[EarpieceClient]:
        """A client whose calls carry `api_key` (default: EARPIECE_API_KEY, else the embedded
        default's dev key), over TLS if `tls` (default: from EARPIECE_TLS_CA) says so."""
        async with authorized_channel(address, api_key=api_key, tls=tls) as channel:
            yield cls(channel)

    async def start_session(
        self,
        *,
        tenant_id: str = "",
        instructions: str | None = None,
        persona_yaml: str | None = None,
        tools: Sequence[str] = (),
        voice: str = "",
        model: str = "",
        echo_gate: bool = False,
        idle_timeout: timedelta | None = None,
        session_id: str = "",
    ) -> session_pb2.StartSessionResponse:
        """Starts a session for `tenant_id` (empty: the API key's own tenant; only an admin key
        may name another)."""
        config = session_pb2.SessionConfig(
            voice=voice, model=model, tools=list(tools), echo_gate=echo_gate
        )
        if persona_yaml is not None:
            config.persona_yaml = persona_yaml
        if instructions is not None:
            config.instructions = instructions
        if idle_timeout is not None:
            config.idle_timeout.CopyFrom(Duration(seconds=int(idle_timeout.total_seconds())))
        response: session_pb2.StartSessionResponse = await self.sessions.StartSession(
            session_pb2.StartSessionRequest(
                tenant_id=tenant_id, config=config, session_id=session_id
            )
        )
        return response

    @asynccontextmanager
    async def attach(
        self, session_id: str, *, resume: SessionStream | None = None, batch_ms: int = 0
    ) -> AsyncIterator[SessionStream]:
        """Opens Connect and attaches; raises grpc.aio.AioRpcError if the server refuses.

        `resume`: the stream this one replaces (it broke, or its gateway died). The attach says
        which seqs the client has seen, and what was sent on it but is not yet durable is sent
        again with the same client event ids, so the session records it exactly once.

        `batch_ms` (0: off; up to 500): microphone frames smaller than this are joined into
        messages of `batch_ms` each, one client event id apiece, so a device's 10 ms frames do
        not each cost a gRPC message, a log event and a model append. What is left goes
        when `batch_ms` has passed since the batch's first frame, or before any other message,
        or when `stream_audio` ends or the stream closes (`flush_audio` sends it at once)."""
        SessionStream.batch_bytes(batch_ms=batch_ms)  # a bad value is refused before the call
        call = self.sessions.Connect()  # type: ignore[call-arg]  # stubs predate aio streams
        stream = SessionStream(call, session_id, batch_ms=batch_ms)
        attach = session_pb2.Attach(
            session_id=session_id, last_seen_seq=resume.last_seen_seq if resume else 0
        )
        try:
            await stream.send(session_pb2.ClientMessage(attach=attach))
            first = await stream.receive()
            if first is None:
                await call  # type: ignore[misc]  # raises the server's status
                raise ConnectionError("the server closed the stream before attaching")
            stream.attached = first.attached
            if resume is not None:
                stream.last_seen_seq = max(stream.last_seen_seq, resume.last_seen_seq)
                for message in list(resume.pending.values()):
                    await stream.send(message)
            yield stream
            await stream.close()
        finally:
            stream.cancel()

    async def end_session(self, session_id: str, *, reason: str = "") -> session_pb2.Session:
        response = await self.sessions.EndSession(
            session_pb2.EndSessionRequest(session_id=session_id, reason=reason)
        )
        return response.session

    async def get_session(self, session_id: str) -> session_pb2.Session:
        session: session_pb2.Session = await self.sessions.GetSession(
            session_pb2.GetSessionRequest(session_id=session_id)
        )
        return session

    async def read_events(
        self, session_id: str, *, after_seq: int = 0, limit: int = 0
    ) -> AsyncIterator[replay_pb2.Event]:
        """The session's events after `after_seq` (at most `limit`; 0: all), one by one; the
        server sends them in pages (`ReadEventsResponse`), which this unpacks."""
        call = self.replay.ReadEvents(
            replay_pb2.ReadEventsRequest(session_id=session_id, after_seq=after_seq, limit=limit)
        )
        async for page in call:
            for event in page.events:
                yield event
