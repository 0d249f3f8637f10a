"""The floor for `make bench-load --floor`: the least a Python process can do to carry the same
sessions, measured beside the gateway in one run.

It speaks the part of the SessionService API the load clients use (StartSession, Connect,
EndSession) on the same grpc.aio server, and relays each session over its own WebSocket to the
same simulator with `websockets`, the library under the OpenAI SDK:
- each client audio frame becomes one `input_audio_buffer.append` (the JSON formatted directly);
- each `response.output_audio.delta` becomes one AssistantAudio message;
- an assistant transcript's `.done` becomes a final Transcript (the clients' playback cue).

Nothing else: no API keys, no validation, no event log, no Temporal, no turn machine; the
simulator's own server VAD answers each utterance. So the relay's CPU per session is what the
gRPC and WebSocket libraries cost at this message rate on this machine, which no change inside
the gateway can go below.

python -m benchmarks.load.bare_relay   (reads EARPIECE_GRPC_ADDRESS, EARPIECE_SIMULATOR_URL;
prints "gateway listening" once serving, as the gateway does)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator

from services.runtime.grpc_env import configure_grpc_core

configure_grpc_core()  # the gateway's gRPC core settings, so the floor is comparable

import grpc
from websockets.asyncio.client import ClientConnection, connect

from services.api.earpiece.v1 import session_pb2 as pb
from services.api.earpiece.v1 import session_pb2_grpc

APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
DELTA = "response.output_audio.delta"
TRANSCRIPT_DONE = "response.output_audio_transcript.done"


async def relay_model(
    ws: ClientConnection, outbound: asyncio.Queue[pb.ServerMessage | None]
) -> None:
    """The model's audio deltas and final transcripts, as the client's messages."""
    async for text in ws:
        event = json.loads(text)
        kind = event.get("type")
        if kind == DELTA:
            audio = pb.AssistantAudio(
                response_id=event["response_id"],
                item_id=event["item_id"],
                pcm16=base64.b64decode(event["delta"]),
            )
            outbound.put_nowait(pb.ServerMessage(audio=audio))
        elif kind == TRANSCRIPT_DONE:
            transcript = pb.Transcript(
                role=pb.Transcript.ROLE_ASSISTANT,
                response_id=event["response_id"],
                text=event["transcript"],
                final=True,
            )
            outbound.put_nowait(pb.ServerMessage(transcript=transcript))


class BareRelay(session_pb2_grpc.SessionServiceServicer):
    def __init__(self, simulator_url: str) -> None:
        self.url = f"{simulator_url.rstrip('/')}/realtime?model=gpt-realtime"

    async def StartSession(
        self, request: pb.StartSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartSessionResponse:
        return pb.StartSessionResponse(session=pb.Session(session_id=str(uuid.uuid4())))

    async def EndSession(
        self, request: pb.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.EndSessionResponse:
        return pb.EndSessionResponse(session=pb.Session(session_id=request.session_id))

    async def GetSession(
        self, request: pb.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Session:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare relay keeps no sessions")

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSessionsResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare relay keeps no sessions")

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ClientMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ServerMessage]:
        first = await anext(aiter(request_iterator))
        outbound: asyncio.Queue[pb.ServerMessage | None] = asyncio.Queue()
        async with connect(self.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            yield pb.ServerMessage(
                attached=pb.Attached(session=pb.Session(session_id=first.attach.session_id))
            )

            async def uplink() -> None:
                count = 0
                try:
                    async for message in request_iterator:
                        if message.WhichOneof("body") == "audio":
                            count += 1
                            audio = base64.b64encode(message.audio.pcm16).decode("ascii")
                            await ws.send(f'{APPEND_PREFIX}{audio}","event_id":"e{count}"}}')
                finally:
                    outbound.put_nowait(None)  # the client is done: end the stream

            async def downlink() -> None:
                try:
                    await relay_model(ws, outbound)
                finally:
                    outbound.put_nowait(None)  # the model link closed: end the stream too

            tasks = [asyncio.create_task(uplink()), asyncio.create_task(downlink())]
            try:
                while (message := await outbound.get()) is not None:
                    yield message
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def serve() -> None:
    server = grpc.aio.server()
    session_pb2_grpc.add_SessionServiceServicer_to_server(
        BareRelay(os.environ["EARPIECE_SIMULATOR_URL"]), server
    )
    address = os.environ["EARPIECE_GRPC_ADDRESS"]
    server.add_insecure_port(address)
    await server.start()
    print(f"gateway listening on {address} (bare relay)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1)


if __name__ == "__main__":
    asyncio.run(serve())
