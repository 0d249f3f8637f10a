"""Measures what a client that never reads costs the gateway, with the default outbound bound:
the stream's queued bytes and the process's RSS, sampled each second for a minute, while the
client keeps talking to a simulated model that keeps answering with audio.

    python -m tests.hostile.slow_client_rss [--seconds 60]

The gateway runs in this process (with the simulator and the client), so the RSS is an upper
bound on the gateway's own."""

from __future__ import annotations

from services.runtime.grpc_env import configure_grpc_core

configure_grpc_core()  # before anything imports grpc

import argparse
import asyncio
import logging
import time
from collections.abc import AsyncIterator

from services.api.earpiece.v1 import session_pb2 as pb
from services.api.earpiece.v1 import session_pb2_grpc
from services.client import authorized_channel
from services.gateway.server import running_gateway
from services.realtime.simulator.scenario import load_builtin_scenario
from services.realtime.simulator.server import serve_simulator
from services.realtime.simulator.voice import silence, synthesize_speech
from services.runtime.app import model_link_factory
from tests.hostile.helpers import new_id, start
from tests.hostile.stack import hostile_stack


def rss() -> int:
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def measure(seconds: float, *, read: bool, pace: float) -> None:
    speech = synthesize_speech("Tell me about fractions, please.") + silence(900)
    frames = [speech[i : i + 960] for i in range(0, len(speech), 960)]
    async with hostile_stack() as stack:
        sim = await serve_simulator(
            host="127.0.0.1",
            port=0,
            scenario=load_builtin_scenario("tutoring"),
            realtime_pacing=False,
        )
        try:
            from services.runtime.config import Settings

            settings = Settings.from_env({})
            async with (
                running_gateway(
                    store=stack.store,
                    client=stack.gateway.gateway.client,
                    address="127.0.0.1:0",
                    link_factory=model_link_factory(settings, simulator_url=sim.url),
                ) as gw,
                authorized_channel(gw.address, api_key=stack.api_key) as channel,
            ):
                stub = session_pb2_grpc.SessionServiceStub(channel)
                session_id = await start(stub)
                stop = asyncio.Event()

                async def requests() -> AsyncIterator[pb.ClientMessage]:
                    yield pb.ClientMessage(
                        client_event_id=new_id("attach"), attach=pb.Attach(session_id=session_id)
                    )
                    n = 0
                    while not stop.is_set():
                        for frame in frames:
                            n += 1
                            yield pb.ClientMessage(
                                client_event_id=f"a-{n}", audio=pb.AudioFrame(pcm16=frame)
                            )
                            await asyncio.sleep(pace)  # 0.02: a real microphone's pace

                call = stub.Connect(requests())  # never read, unless --read (the baseline)
                drain = asyncio.create_task(_drain(call)) if read else None
                base = rss()
                started = time.monotonic()
                peak_rss, peak_queue, cut_at = base, 0, None
                attached = False
                print(f"RSS at start: {base / 2**20:.0f} MiB")
                while (elapsed := time.monotonic() - started) < seconds:
                    live = gw.gateway.live(session_id)
                    queued = live.outbound.bytes if live is not None else 0
                    attached = attached or live is not None
                    if live is None and attached and cut_at is None:
                        cut_at = elapsed
                    now = rss()
                    peak_rss, peak_queue = max(peak_rss, now), max(peak_queue, queued)
                    if int(elapsed) % 5 == 0:
                        print(
                            f"  {elapsed:4.0f}s  RSS {now / 2**20:6.0f} MiB  "
                            f"queued {queued / 2**20:5.2f} MiB  "
                            f"{'attached' if live is not None else 'disconnected'}"
                        )
                    await asyncio.sleep(1.0)
                stop.set()
                call.cancel()
                if drain is not None:
                    await asyncio.gather(drain, return_exceptions=True)
                end = rss()
                print(
                    f"RSS start {base / 2**20:.0f} MiB, peak {peak_rss / 2**20:.0f} MiB, end "
                    f"{end / 2**20:.0f} MiB; most queued {peak_queue / 2**20:.2f} MiB; "
                    f"disconnected after {cut_at if cut_at is not None else float('nan'):.0f}s"
                )
        finally:
            await sim.stop()


async def _drain(call: object) -> None:
    async for _ in call:  # type: ignore[attr-defined]
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--read", action="store_true", help="a client that reads: the baseline")
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between 20 ms frames")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(measure(args.seconds, read=args.read, pace=args.pace))


if __name__ == "__main__":
    main()
