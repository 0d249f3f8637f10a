"""`make fuzz`: the public API under volume fuzzing, outside `make test`.

At least 50,000 hypothesis-generated cases across StartSession, Connect (messages on live
streams), every ReplayService RPC and the other SessionService RPCs, against a stack of its own
(tests/hostile/stack.py), while a well-behaved canary session streams screen state and audio
beside them. Prints the counts; the goal for each of the last four is 0:

- UNKNOWN and INTERNAL statuses (calls, stream endings, and Errors on streams);
- silent stream deaths: a stream that ended without a status saying why, or stopped answering;
- canary events lost: acknowledged to the canary but not in Postgres afterwards.

    python -m tests.hostile.fuzz_api [--cases N] [--workers N]
"""

from __future__ import annotations

from services.runtime.grpc_env import configure_grpc_core

configure_grpc_core()  # before anything imports grpc

import argparse
import asyncio
import json
import logging
import queue
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.api.earpiece.v1 import replay_pb2, session_pb2
from tests.hostile.helpers import RawStream, screen, start
from tests.hostile.stack import Stack, hostile_stack
from tests.hostile.strategies import client_messages, messages, start_requests

BAD = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
BAD_CODES = {c.value[0] for c in BAD}
REPLAY = replay_pb2.DESCRIPTOR.services_by_name["ReplayService"]
SESSION = session_pb2.DESCRIPTOR.services_by_name["SessionService"]
FUZZ_STREAMS = 8
PROBE_EVERY = 25  # messages on a stream between liveness probes


@dataclass
class Case:
    kind: str  # "start", "connect", "replay:<Method>", "session:<Method>"
    request: Any


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    rare: Counter[str] = field(default_factory=Counter)  # code and RPC, for the uncommon codes
    bad: list[str] = field(default_factory=list)
    unknown: int = 0
    internal: int = 0
    silent_deaths: list[str] = field(default_factory=list)
    streams_ended_with_reason: int = 0
    canary_acked: int = 0
    canary_lost: int = 0
    canary_problems: list[str] = field(default_factory=list)

    def status(self, kind: str, code: grpc.StatusCode, details: str) -> None:
        self.statuses[code.name] += 1
        if code not in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}:
            self.rare[f"{code.name} from {kind}"] += 1
        if code in BAD:
            self.bad_code(code.value[0], f"{kind}: {code.name}: {details[:200]}")

    def bad_code(self, code: int, what: str) -> None:
        if code == grpc.StatusCode.UNKNOWN.value[0]:
            self.unknown += 1
        else:
            self.internal += 1
        self.bad.append(what)


def cases(total: int, known: list[str]) -> st.SearchStrategy[Case]:
    """The mix: a quarter StartSession, ~45% Connect messages, the rest the other RPCs."""
    replay_methods = list(REPLAY.methods)
    reads = [SESSION.methods_by_name[n] for n in ("GetSession", "ListSessions", "EndSession")]

    @st.composite
    def one(draw: st.DrawFn) -> Case:
        roll = draw(st.integers(0, 99))
        if roll < 25:
            return Case("start", draw(start_requests()))
        if roll < 70:
            return Case("connect", draw(client_messages()))
        if roll < 90:
            method = draw(st.sampled_from(replay_methods))
            return Case(f"replay:{method.name}", draw(messages(method.input_type, known=known)))
        method = draw(st.sampled_from(reads))
        # Known ids only for reads: EndSession must not end the fuzz streams' own sessions.
        ids = known if method.name != "EndSession" else []
        return Case(f"session:{method.name}", draw(messages(method.input_type, known=ids)))

    return one()


def generate(total: int, known: list[str], out: queue.Queue[Case | None]) -> None:
    """Runs in a thread: hypothesis draws `total` cases into `out` (generation only: the
    driver counts failures rather than shrinking them)."""

    @settings(
        max_examples=total,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(total, known))
    def draw(case: Case) -> None:
        out.put(case)

    try:
        draw()
    finally:
        out.put(None)


class Canary:
    """A well-behaved session beside the fuzzing: screen state (acknowledged) and 20 ms audio
    frames, all through the run."""

    def __init__(self, stack: Stack, session_id: str) -> None:
        self.stack = stack
        self.session_id = session_id
        self.stream = RawStream(stack.sessions, session_id)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        await self.stream.attached()
        n = 0
        frame = bytes(960)
        while not self.stop.is_set() and not self.stream.ended.is_set():
            n += 1
            self.stream.send(
                session_pb2.ClientMessage(
                    client_event_id=f"canary-a-{n}", audio=session_pb2.AudioFrame(pcm16=frame)
                )
            )
            if n % 5 == 0:
                self.stream.send(screen(json.dumps({"canary": n}), f"canary-s-{n}"))
            await asyncio.sleep(0.02)

    async def finish(self, tally: Tally) -> None:
        self.stop.set()
        await self.task
        await self.stream.close()
        if self.stream.status != grpc.StatusCode.OK:
            tally.canary_problems.append(
                f"stream ended {self.stream.status}: {self.stream.details}"
            )
        errors = [r.error for r in self.stream.replies if r.WhichOneof("body") == "error"]
        tally.canary_problems.extend(f"error: {e.message}" for e in errors)
        acked = {
            r.ack.client_event_id: r.seq
            for r in self.stream.replies
            if r.WhichOneof("body") == "ack" and not r.ack.duplicate
        }
        conn = await asyncpg.connect(self.stack.pg.url)
        try:
            rows = await conn.fetch(
                "SELECT client_event_id, seq FROM session_events"
                " WHERE session_id = $1 AND client_event_id LIKE 'canary-%'",
                self.session_id,
            )
        finally:
            await conn.close()
        stored = {r["client_event_id"]: r["seq"] for r in rows}
        tally.canary_acked = len(acked)
        tally.canary_lost = sum(1 for cid, seq in acked.items() if stored.get(cid) != seq)
        audio_sent = sum(1 for cid in stored if cid.startswith("canary-a-"))
        if audio_sent == 0:
            tally.canary_problems.append("no canary audio recorded")


class FuzzStream:
    """One fuzz stream; replaced by a fresh session when it ends (with a reason)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stream: RawStream | None = None
        self.sent = 0
        self.lock = asyncio.Lock()

    async def ensure(self) -> RawStream:
        if self.stream is None or self.stream.ended.is_set():
            session_id = await start(self.stack.sessions)
            self.stream = RawStream(self.stack.sessions, session_id)
            await self.stream.attached()
            self.sent = 0
        return self.stream

    async def send(self, message: session_pb2.ClientMessage, tally: Tally) -> None:
        async with self.lock:
            stream = await self.ensure()
            first = len(stream.replies)
            stream.send(message)
            self.sent += 1
            if self.sent % PROBE_EVERY == 0:
                await self.probe(stream, tally)
            for r in stream.replies[first:]:
                if r.WhichOneof("body") == "error" and r.error.code in BAD_CODES:
                    tally.bad_code(r.error.code, f"connect Error {r.error.code}: {r.error.message}")

    async def probe(self, stream: RawStream, tally: Tally) -> None:
        probe = screen('{"probe": true}', f"probe-{uuid.uuid4().hex}")
        stream.send(probe)
        try:
            await stream.reply_to(probe.client_event_id, wait=15)
        except TimeoutError:
            tally.silent_deaths.append("a stream stopped answering (no reply to a probe in 15 s)")
        except AssertionError:
            self.ended(stream, tally)

    def ended(self, stream: RawStream, tally: Tally) -> None:
        told = any(
            (r.WhichOneof("body") == "error" and r.error.fatal)
            or (r.WhichOneof("body") == "state" and r.state.state == r.state.STATE_ENDED)
            for r in stream.replies
        )
        status = stream.status or grpc.StatusCode.UNKNOWN
        tally.status("connect-end", status, stream.details)
        if status == grpc.StatusCode.OK and not told:
            tally.silent_deaths.append("a stream ended OK without being told why")
        elif status != grpc.StatusCode.OK and not stream.details:
            tally.silent_deaths.append(f"a stream ended {status.name} with no details")
        else:
            tally.streams_ended_with_reason += 1

    async def close(self, tally: Tally) -> None:
        if self.stream is not None:
            if not self.stream.ended.is_set():
                await self.probe(self.stream, tally)
            if self.stream.ended.is_set():
                self.ended(self.stream, tally)
            await self.stream.close()


async def run_case(stack: Stack, case: Case, streams: list[FuzzStream], tally: Tally) -> None:
    tally.cases[case.kind.split(":")[0]] += 1
    if case.kind == "connect":
        await streams[hash(case.request.client_event_id) % len(streams)].send(case.request, tally)
        return
    rpc: Any
    if case.kind == "start":
        rpc, streaming = stack.sessions.StartSession, False
    else:
        service, name = case.kind.split(":")
        stub = stack.replay if service == "replay" else stack.sessions
        desc = REPLAY if service == "replay" else SESSION
        rpc, streaming = getattr(stub, name), desc.methods_by_name[name].server_streaming
    try:
        if streaming:
            async for _ in rpc(case.request, timeout=30):
                pass
        else:
            await rpc(case.request, timeout=30)
    except grpc.aio.AioRpcError as exc:
        tally.status(case.kind, exc.code(), exc.details() or "")
    else:
        tally.statuses["OK"] += 1


async def drive(total: int, workers: int) -> Tally:
    tally = Tally()
    async with hostile_stack() as stack:
        canary = Canary(stack, await start(stack.sessions))
        streams = [FuzzStream(stack) for _ in range(FUZZ_STREAMS)]
        for s in streams:
            await s.ensure()
        known = [_session_of(s) for s in streams]
        feed: queue.Queue[Case | None] = queue.Queue(maxsize=2000)
        thread = threading.Thread(target=generate, args=(total, known, feed))
        thread.start()
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        done = 0

        async def worker() -> None:
            nonlocal done
            while (case := await loop.run_in_executor(None, feed.get)) is not None:
                await run_case(stack, case, streams, tally)
                done += 1
                if done % 5000 == 0:
                    rate = done / (time.monotonic() - started)
                    print(f"  {done} cases, {rate:.0f}/s", flush=True)
            feed.put(None)  # let the other workers stop too

        await asyncio.gather(*(worker() for _ in range(workers)))
        thread.join()
        for s in streams:
            await s.close(tally)
        await canary.finish(tally)
        elapsed = time.monotonic() - started
        print(f"  {done} cases in {elapsed:.0f}s ({done / elapsed:.0f}/s)")
    return tally


def _session_of(fuzz: FuzzStream) -> str:
    assert fuzz.stream is not None
    attached = next(r for r in fuzz.stream.replies if r.WhichOneof("body") == "attached")
    return attached.attached.session.session_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the gateway logs every rejection; counts here
    print(f"fuzzing the API with {args.cases} cases ({args.workers} concurrent callers)")
    tally = asyncio.run(drive(args.cases, args.workers))
    total = sum(tally.cases.values())
    print(
        "\ncases:",
        ", ".join(f"{k} {v}" for k, v in sorted(tally.cases.items())),
        f"(total {total})",
    )
    print("statuses:", ", ".join(f"{k} {v}" for k, v in tally.statuses.most_common()))
    if tally.rare:
        print("  of which:", ", ".join(f"{k} {v}" for k, v in tally.rare.most_common()))
    print(f"streams ended with a reason (and replaced): {tally.streams_ended_with_reason}")
    print(f"\nUNKNOWN statuses:        {tally.unknown}  (goal 0)")
    print(f"INTERNAL statuses:       {tally.internal}  (goal 0)")
    print(f"silent stream deaths:    {len(tally.silent_deaths)}  (goal 0)")
    print(f"canary events lost:      {tally.canary_lost} of {tally.canary_acked} acked  (goal 0)")
    for line in [*tally.bad[:10], *tally.silent_deaths[:10], *tally.canary_problems[:10]]:
        print("  -", line)
    failed = tally.bad or tally.silent_deaths or tally.canary_lost or tally.canary_problems
    sys.exit(1 if failed or total < args.cases else 0)


if __name__ == "__main__":
    main()
