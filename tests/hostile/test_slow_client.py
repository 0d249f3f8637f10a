"""A client that never reads its stream: past the outbound bound the gateway disconnects it with
RESOURCE_EXHAUSTED, and what it holds for that stream stays within the bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from services.api.earpiece.v1 import session_pb2 as pb
from services.api.earpiece.v1 import session_pb2_grpc
from services.client import authorized_channel
from services.gateway import outbound
from services.gateway.server import RunningGateway, running_gateway
from services.realtime.simulator.voice import silence, synthesize_speech
from services.runtime.app import model_link_factory
from services.runtime.config import Settings
from tests.gateway.live_helpers import simulator
from tests.hostile.helpers import new_id, start

BOUND = 64 * 1024


async def test_a_client_that_never_reads_is_disconnected_within_the_bound(
    gateway: RunningGateway, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "MAX_OUTBOUND_BYTES", BOUND)
    speech = synthesize_speech("Tell me about fractions, please.") + silence(900)
    frames = [speech[i : i + 960] for i in range(0, len(speech), 960)]
    async with (
        simulator("tutoring") as sim,
        running_gateway(
            store=gateway.gateway.store,
            client=gateway.gateway.client,
            address="127.0.0.1:0",
            link_factory=model_link_factory(settings, simulator_url=sim.url),
        ) as gw,
        authorized_channel(gw.address) as channel,
    ):
        stub = session_pb2_grpc.SessionServiceStub(channel)
        session_id = await start(stub)

        async def requests() -> AsyncIterator[pb.ClientMessage]:
            yield pb.ClientMessage(
                client_event_id=new_id("attach"), attach=pb.Attach(session_id=session_id)
            )
            for round_ in range(20):  # keep asking, so the model keeps answering
                for i, frame in enumerate(frames):
                    yield pb.ClientMessage(
                        client_event_id=f"a-{round_}-{i}", audio=pb.AudioFrame(pcm16=frame)
                    )
                await asyncio.sleep(0.5)

        call = stub.Connect(requests())  # ... and never read
        most = 0
        seen_live = False
        async with asyncio.timeout(60):
            while True:
                live = gw.gateway.live(session_id)
                if live is None and seen_live:
                    break  # the gateway let go of the stream
                if live is not None:
                    seen_live = True
                    most = max(most, live.outbound.bytes)
                await asyncio.sleep(0.01)
        assert most <= BOUND
        # A client that reads at last gets what gRPC already held, then the reason.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async with asyncio.timeout(20):
                async for _ in call:
                    pass
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "stopped reading" in (caught.value.details() or "")
