"""Helpers for the hostile-input tests: a raw Connect stream driven message by message, and
requests that a well-behaved client would never send."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc

from services.api.earpiece.v1 import session_pb2 as pb
from services.api.earpiece.v1 import session_pb2_grpc

TENANT = "acme"
INSTRUCTIONS = "You are a calm maths tutor. Speak in short sentences."


def new_id(prefix: str = "h") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


async def start(stub: session_pb2_grpc.SessionServiceAsyncStub, **config: object) -> str:
    cfg = pb.SessionConfig(instructions=INSTRUCTIONS)
    for key, value in config.items():
        setattr(cfg, key, value)
    response = await stub.StartSession(pb.StartSessionRequest(tenant_id=TENANT, config=cfg))
    return response.session.session_id


class RawStream:
    """A Connect call fed from a queue; replies are read by a background task, so a test can
    look for the reply to one message while the stream goes on."""

    def __init__(self, stub: session_pb2_grpc.SessionServiceAsyncStub, session_id: str) -> None:
        self._out: asyncio.Queue[pb.ClientMessage | None] = asyncio.Queue()
        self.replies: list[pb.ServerMessage] = []
        self.status: grpc.StatusCode | None = None
        self.details = ""
        self.ended = asyncio.Event()
        self._changed = asyncio.Event()
        self._out.put_nowait(
            pb.ClientMessage(
                client_event_id=new_id("attach"), attach=pb.Attach(session_id=session_id)
            )
        )
        self.call = stub.Connect(self._requests())
        self._task = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[pb.ClientMessage]:
        while (message := await self._out.get()) is not None:
            yield message

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                self.replies.append(reply)
                self._changed.set()
            self.status = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            self.status, self.details = exc.code(), exc.details() or ""
        finally:
            self.ended.set()
            self._changed.set()

    def send(self, message: pb.ClientMessage) -> None:
        self._out.put_nowait(message)

    async def reply_to(self, client_event_id: str, *, wait: float = 10.0) -> pb.ServerMessage:
        """The Ack or Error about one client message."""
        async with asyncio.timeout(wait):
            while True:
                for reply in self.replies:
                    body = reply.WhichOneof("body")
                    if body == "ack" and reply.ack.client_event_id == client_event_id:
                        return reply
                    if body == "error" and reply.error.client_event_id == client_event_id:
                        return reply
                if self.ended.is_set():
                    raise AssertionError(
                        f"stream ended ({self.status}: {self.details}) before a reply to "
                        f"{client_event_id!r}"
                    )
                self._changed.clear()
                await self._changed.wait()

    async def attached(self, *, wait: float = 10.0) -> pb.ServerMessage:
        async with asyncio.timeout(wait):
            while True:
                for reply in self.replies:
                    if reply.WhichOneof("body") == "attached":
                        return reply
                if self.ended.is_set():
                    raise AssertionError(f"stream ended ({self.status}: {self.details})")
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._out.put_nowait(None)
        try:
            async with asyncio.timeout(10):
                await self.ended.wait()
        except TimeoutError:
            self.call.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def screen(json_text: str, cid: str | None = None) -> pb.ClientMessage:
    return pb.ClientMessage(
        client_event_id=cid or new_id("screen"), screen_state=pb.ScreenState(json=json_text)
    )
