"""Two gateway processes on one Temporal and one Postgres, beside the suite's worker and a
second worker process. A gateway is SIGKILLed in the middle of an answer: the session
re-attaches on the other, which records the loss first, rebuilds the model's conversation from
the log and answers; a session nobody re-attaches ends on its idle timeout once the dead
holder's lease has expired.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from services.api.earpiece.v1 import session_pb2 as pb
from services.client import EarpieceClient
from services.gateway.server import RunningGateway
from services.store.event_store import EventStore
from tests.conftest import free_port
from tests.gateway.live_helpers import simulator, speak
from tests.gateway.players import Player
from tests.gateway.test_session_api import BRIEFING
from workflows.session_workflow import SessionWorkflow

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0
IDLE_S = 10
SIM = "EARPIECE_SIMULATOR_URL"
Gateway = tuple[str, subprocess.Popen[str]]


@contextmanager
def process(args: list[str], env: dict[str, str], ready: str) -> Iterator[subprocess.Popen[str]]:
    """An `earpiece` command in its own process, once it printed `ready`; killed at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"{args[0]} exited: {''.join(seen)}")
            seen.append(line)
            if ready in line:
                break
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def cluster_env(pg_url: str, temporal: Client, default_api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(
        DATABASE_URL=pg_url,
        TEMPORAL_ADDRESS=temporal.service_client.config.target_host,
        EARPIECE_LEASE_S=str(LEASE_S),
        EARPIECE_API_KEY=default_api_key,
    )
    return env


@asynccontextmanager
async def two_gateways(
    env: dict[str, str], sim_url: str
) -> AsyncIterator[list[tuple[str, subprocess.Popen[str]]]]:
    ports = [free_port(), free_port()]
    with (
        process(["worker"], env, "worker running"),
        process(
            ["gateway"],
            {
                **env,
                "EARPIECE_GRPC_ADDRESS": f"127.0.0.1:{ports[0]}",
                "EARPIECE_SIMULATOR_URL": sim_url,
            },
            "gateway listening",
        ) as a,
        process(
            ["gateway"],
            {
                **env,
                "EARPIECE_GRPC_ADDRESS": f"127.0.0.1:{ports[1]}",
                "EARPIECE_SIMULATOR_URL": sim_url,
            },
            "gateway listening",
        ) as b,
    ):
        yield [(f"127.0.0.1:{ports[0]}", a), (f"127.0.0.1:{ports[1]}", b)]


def idle(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


async def test_gateway_sigkill_mid_answer_reattaches_on_the_other_gateway(
    gateway: RunningGateway, cluster_env: dict[str, str], store: EventStore
) -> None:
    async with (
        simulator("gateway_crash", realtime=True) as sim,
        two_gateways(cluster_env, sim.url) as gws,
    ):
        (addr_a, proc_a), (addr_b, _) = gws
        async with EarpieceClient.connect(addr_a) as client_a:
            started = await client_a.start_session(instructions=BRIEFING, idle_timeout=idle(60))
            session_id = started.session.session_id
            async with client_a.attach(session_id) as old, Player(old) as first_player:
                await old.send_screen_state({"screen": "fractions", "step": 3})
                await speak(old, sim.scenario.user_utterances[0])
                await first_player.wait_for(lambda m: m.WhichOneof("body") == "audio", timeout_s=20)
                await asyncio.sleep(1.5)  # mid-answer
                sent = [await old.send_text(f"typed while it spoke {i}") for i in range(3)]
                killed_at = time.monotonic()
                proc_a.send_signal(signal.SIGKILL)
                proc_a.wait(timeout=10)
        seen_before = list(first_player.messages)
        async with EarpieceClient.connect(addr_b) as client_b:
            async with client_b.attach(session_id, resume=old) as s, Player(s) as player:
                attached_after = time.monotonic() - killed_at
                second = await sim.wait_for_session(1, timeout_s=20)
                await speak(s, sim.scenario.user_utterances[1])
                await second.wait_for_sent("response.done", timeout_s=30)
                await player.wait_for(lambda m: m.WhichOneof("body") == "audio", timeout_s=20)
                answered_after = time.monotonic() - killed_at
            ended = await client_b.end_session(session_id)
        received = second.received_events()
    assert ended.status == pb.SESSION_STATUS_ENDED
    events = [e async for e in store.read_events(session_id)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    # Exactly-once ingest across the crash: what the client sent is in the log once, whether it
    # was durable before the kill or resent by the client library after.
    ids = [e.client_event_id for e in events if e.client_event_id]
    for cid in sent:
        assert ids.count(cid) == 1
    # A seq the client saw names the event it saw, or a void, never another event.
    by_seq = {e.seq: e for e in events}
    for m in seen_before:
        if not m.seq:
            continue
        event = by_seq[m.seq]
        if event.kind == "gateway.void":
            continue
        if m.WhichOneof("body") == "ack":
            assert event.client_event_id == m.ack.client_event_id
        elif m.WhichOneof("body") == "audio":
            assert event.kind == "model.server.response.output_audio.delta"
    kinds = [e.kind for e in events]
    # The next holder records the loss before anything else it writes.
    lost = kinds.index("gateway.lost")
    attaches = [e for e in events if e.kind == "client.attach"]
    assert len(attaches) == 2 and attaches[0].seq < lost + 1 < attaches[1].seq
    assert "model.link_rebuilt" in kinds[lost:]
    assert events[lost].payload["previous_connection"] == attaches[0].payload["connection_id"]
    durable = events[lost].payload["last_durable_seq"]
    first_void, last_void = events[lost].payload["void_seqs"]
    assert first_void == durable + 1 and last_void == lost  # voids, then the loss (seq lost+1)
    assert all(e.kind == "gateway.void" for e in events[durable:lost])
    # The new link: the same instructions, then the conversation so far, the screen last.
    assert received[0]["type"] == "session.update"
    [rebuilt] = [e.payload for e in events if e.kind == "model.link_rebuilt"]
    items = [e["item"] for e in received if e["type"] == "conversation.item.create"]
    items = items[: rebuilt["items_replayed"]]  # after them: the texts the client resent
    texts = [(i["role"], i["content"][0]["text"]) for i in items if i["type"] == "message"]
    assert texts[0] == ("user", "Tell me about fractions.")
    assert texts[1][0] == "assistant" and texts[1][1].startswith("A fraction has two parts")
    assert texts[-1][0] == "user" and '"step": 3' in texts[-1][1]
    print(f"SIGKILL → attached elsewhere {attached_after:.2f} s, answering {answered_after:.2f} s")


async def test_orphaned_session_ends_on_its_idle_timeout(
    gateway: RunningGateway, cluster_env: dict[str, str], store: EventStore, temporal: Client
) -> None:
    async with (
        simulator("gateway_crash", realtime=True) as sim,
        two_gateways(cluster_env, sim.url) as gws,
    ):
        (addr_a, proc_a), _ = gws
        async with EarpieceClient.connect(addr_a) as client:
            started = await client.start_session(instructions=BRIEFING, idle_timeout=idle(IDLE_S))
            session_id = started.session.session_id
            async with client.attach(session_id) as s:
                await s.send_text("hello")
                await asyncio.sleep(0.5)
                proc_a.send_signal(signal.SIGKILL)
                proc_a.wait(timeout=10)
                killed_at = time.monotonic()
        # The lease (2 s), then the idle timeout (10 s, the shortest allowed), with room for a
        # loaded machine.
        handle = temporal.get_workflow_handle(session_id)
        async with asyncio.timeout(40):
            await handle.result()
        took = time.monotonic() - killed_at
        view = await handle.query(SessionWorkflow.state)
    # Detected by the lease, recorded with its cause.
    assert view.progress.detached_cause == "gateway_lost"
    record = await store.get_session(session_id)
    assert record is not None and record.status == "ended" and record.end_reason == "idle_timeout"
    assert took >= IDLE_S - 0.5
    events = [e async for e in store.read_events(session_id)]
    assert events[-1].kind == "session.ended"


async def test_a_frozen_client_is_detected_by_keepalive_and_detached(
    gateway: RunningGateway, store: EventStore, temporal: Client
) -> None:
    async with EarpieceClient.connect(gateway.address) as client:
        started = await client.start_session(instructions=BRIEFING, idle_timeout=idle(600))
    session_id = started.session.session_id
    # Not subprocess.Popen: the gateway serving this client runs on this test's event loop.
    frozen = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.gateway.frozen_client",
        gateway.address,
        session_id,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert frozen.stdout is not None
        async with asyncio.timeout(30):
            assert b"attached" in await frozen.stdout.readline()
        handle = temporal.get_workflow_handle(session_id)
        async with asyncio.timeout(10):  # the attach reaches the workflow as a signal
            while not (await handle.query(SessionWorkflow.state)).attached:
                await asyncio.sleep(0.1)
        frozen.send_signal(signal.SIGSTOP)  # alive to the kernel, silent to everyone else
        stopped = time.monotonic()
        async with asyncio.timeout(40):
            while (await handle.query(SessionWorkflow.state)).attached:
                await asyncio.sleep(0.5)
        print(f"frozen client detached after {time.monotonic() - stopped:.1f} s")
        view = await handle.query(SessionWorkflow.state)
        assert view.progress.detached_cause == "client_detached"
    finally:
        frozen.kill()
        await frozen.wait()
    events = [e async for e in store.read_events(session_id)]
    assert events[-1].kind == "client.detached"
    async with EarpieceClient.connect(gateway.address) as client:
        await client.end_session(session_id)
