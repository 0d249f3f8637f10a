"""`make bench-load`: N concurrent sessions through ONE gateway process, at real-time pacing.

This process starts the embedded Postgres and Temporal and runs the session workflow worker;
for each N it starts, as separate processes, the simulator (simulator.py), one gateway
(`python -m services.cli gateway`) and the client pool (clients.py), then prints:
- inbound latency (client sends a frame → the simulator receives its append) and outbound
  (the simulator sends an audio delta → the client has it), p50/p99/p99.9 in ms, from
  `time.monotonic()` stamps taken in the two processes (system-wide on Linux), frames matched by
  the id carried in their samples (inbound) or by response id and order (outbound);
- frames lost (never arrived) and late (over 100 ms);
- the gateway process's CPU (% of one core) and RSS growth, per session (/proc/<pid>);
- Postgres commits per second (pg_stat_database) and storage growth per session-hour
  (pg_total_relation_size of the event store's tables);
- whether every session's log is complete (a `client.audio` event per frame sent).
Then the largest N with both p99s ≤ 20 ms and nothing lost. `--quick`: small N, short runs.

`--gateway-at REV ...` also runs, for each N and right after this tree's, the gateway as of each
git revision (from a throwaway worktree; the simulator, clients, worker and Postgres stay this
tree's), so a change to the gateway is judged by before/after lines measured in one run.

`--light` runs a lighter harness around the same gateway, for a small machine where the default
simulator and client pool take the cores the gateway needs: the clients without the client
library (light_clients.py) and the simulator checking only the first few events of each type
against the SDK's types. The default is the faithful harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.common import pct, throwaway_settings
from benchmarks.load.frames import split_id
from services.runtime.app import infrastructure
from workflows.worker import session_worker

LATE_MS = 100.0
GOAL_P99_MS = 20.0
TABLES = ("session_events", "audio_chunks", "sessions", "session_summaries")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def process_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds) of every process."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def tree_cpu(root: int, table: dict[int, tuple[int, float]], *, skip: set[int]) -> float:
    """CPU seconds of `root` and its descendants, leaving out the subtrees of `skip`."""
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in skip or pid not in table:
            continue
        total += table[pid][1]
        todo.extend(p for p, (parent, _) in table.items() if parent == pid)
    return total


def others_cpu(postmaster: int, subprocesses: set[int]) -> dict[str, float]:
    """CPU seconds of Postgres (the postmaster and its backends) and of this process with what
    it started apart from the measured subprocesses (the worker, the Temporal dev server)."""
    table = process_table()
    postgres = tree_cpu(postmaster, table, skip=set()) if postmaster else 0.0
    driver = tree_cpu(os.getpid(), table, skip=subprocesses | {postmaster})
    return {"postgres": postgres, "driver+temporal": driver}


def postmaster_pid(state_dir: Path) -> int:
    try:
        return int((state_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Result:
    n: int
    seconds: float
    inbound: list[float]
    outbound: list[float]
    in_lost: int
    out_lost: int
    in_late: int
    out_late: int
    cpu_pct_session: float
    gateway_cpu_pct: float
    sim_cpu_pct: float
    clients_cpu_pct: float
    postgres_cpu_pct: float
    driver_cpu_pct: float
    machine_cpu_pct: float
    rss_mb_session: float
    xact_per_s: float
    mb_per_session_hour: float
    complete: int
    failed: int
    send_lag_p99_ms: float
    first_error: str
    actions_per_hour: dict[str, float] | None = None  # Temporal's billable actions, by type
    actions_fixed: float = 0.0  # per session, outside the paced part: start, attach, end
    gateway: str = "this tree"
    logged: bool = True  # False for the bare relay, which keeps no log

    def holds(self) -> bool:
        return (
            self.failed == 0
            and self.in_lost == 0
            and self.out_lost == 0
            and (self.complete == self.n or not self.logged)
            and bool(self.inbound)
            and pct(self.inbound, 0.99) <= GOAL_P99_MS
            and bool(self.outbound)
            and pct(self.outbound, 0.99) <= GOAL_P99_MS
        )


async def wait_line(proc: asyncio.subprocess.Process, want: str, limit_s: float) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(limit_s):
        while line := (await proc.stdout.readline()).decode():
            if want in line:
                return line.strip()
    raise RuntimeError(f"process {proc.pid} ended before printing {want!r}")


async def stop(proc: asyncio.subprocess.Process, limit_s: float = 30) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), limit_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def db_stats(conn: asyncpg.Connection) -> tuple[int, int]:
    xact = await conn.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    size = 0
    for table in TABLES:
        size += await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
    return int(xact), size


async def one_run(
    n: int,
    seconds: float,
    *,
    env: dict[str, str],
    conn: asyncpg.Connection,
    work: Path,
    postmaster: int,
    profile: Path | None = None,
    gateway_dir: Path | None = None,
    light: bool = False,
    relay: bool = False,
    actions: Callable[[], Counter[str]] | None = None,
) -> Result:
    python = sys.executable
    sim_out, client_out = work / f"sim-{n}.json", work / f"clients-{n}.json"
    harness = ["--light"] if light else []
    sim = await asyncio.create_subprocess_exec(
        python, "-m", "benchmarks.load.simulator", "--out", str(sim_out), *harness,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    gateway: asyncio.subprocess.Process | None = None
    clients: asyncio.subprocess.Process | None = None
    try:
        sim_url = await wait_line(sim, "ws://", 30)
        address = f"127.0.0.1:{free_port()}"
        gw_env = {**env, "EARPIECE_SIMULATOR_URL": sim_url, "EARPIECE_GRPC_ADDRESS": address}
        if gateway_dir is not None:  # `-m` puts the cwd first: that revision's code is run
            gw_env["PYTHONPATH"] = str(gateway_dir)
        serve = ["benchmarks.load.bare_relay"] if relay else ["services.cli", "gateway"]
        gateway = await asyncio.create_subprocess_exec(
            python, "-m", *serve, env=gw_env, stdout=asyncio.subprocess.PIPE, cwd=gateway_dir,
        )  # fmt: skip
        await wait_line(gateway, "gateway listening", 60)
        await asyncio.sleep(1.0)
        rss_idle = rss_mb(gateway.pid)
        snapshot = actions or Counter[str]  # the relay has no Temporal: empty counts
        acts = [snapshot()]
        clients = await asyncio.create_subprocess_exec(
            python, "-m", "benchmarks.load.clients", "--address", address,
            "--sessions", str(n), "--seconds", str(seconds), "--out", str(client_out), *harness,
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await wait_line(clients, "attached", 120)
        await asyncio.sleep(1.5)  # the first frames are on their way; measure the steady state
        pids = {"gateway": gateway.pid, "sim": sim.pid, "clients": clients.pid}
        profiler = (
            await start_profile(gateway.pid, profile / f"gateway-{n}.txt", seconds)
            if profile
            else None
        )
        acts.append(snapshot())
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        rest0 = others_cpu(postmaster, set(pids.values()))
        busy0, total0 = machine_busy()
        xact0, size0 = await db_stats(conn)
        t0 = time.monotonic()
        await wait_line(clients, "sending done", seconds + 60)
        elapsed = time.monotonic() - t0
        acts.append(snapshot())
        cpu = {k: 100 * (cpu_seconds(p) - cpu0[k]) / elapsed for k, p in pids.items()}
        rest1 = others_cpu(postmaster, set(pids.values()))
        cpu.update({k: 100 * (rest1[k] - rest0[k]) / elapsed for k in rest1})
        busy1, total1 = machine_busy()
        xact1, size1 = await db_stats(conn)
        rss_busy = rss_mb(gateway.pid)
        await asyncio.wait_for(clients.wait(), 120)
        await asyncio.sleep(2.0)  # the workflows finish ending
        acts.append(snapshot())
        if profiler is not None and profile is not None:
            await profiler.wait()
            print_profile(profile / f"gateway-{n}.txt", n)
    finally:
        for proc in (clients, gateway, sim):
            if proc is not None:
                await stop(proc)
    result = analyse(
        n,
        elapsed,
        sims=json.loads(sim_out.read_text()),
        pool=json.loads(client_out.read_text()),
        cpu=cpu,
        machine=100 * (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1),
        rss=(rss_busy - rss_idle) / n,
        xact=(xact1 - xact0) / elapsed,
        mb_hour=(size1 - size0) / 1e6 / n / (elapsed / 3600),
        complete=0 if relay else await complete_logs(conn, json.loads(client_out.read_text())),
        logged=not relay,
    )
    if actions is not None:
        talking = acts[2] - acts[1]
        result.actions_per_hour = {k: v / n / (elapsed / 3600) for k, v in talking.items()}
        result.actions_fixed = ((acts[1] - acts[0]).total() + (acts[3] - acts[2]).total()) / n
    return result


def temporal_actions(metrics_port: int, namespace: str) -> Counter[str]:
    """The dev server's `action` counter (what Temporal Cloud bills) for `namespace`, by type."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("action{") and f'namespace="{namespace}"' in line:
            labels, _, value = line.rpartition(" ")
            kind = labels.split('action_type="', 1)[1].split('"', 1)[0]
            counts[kind.removeprefix("grpc_").removeprefix("command_")] += int(float(value))
    return counts


async def start_profile(pid: int, out: Path, seconds: float) -> asyncio.subprocess.Process:
    """py-spy samples the gateway (from outside, without slowing it much) for the paced part."""
    spy = Path(sys.executable).with_name("py-spy")
    return await asyncio.create_subprocess_exec(
        str(spy), "record", "--pid", str(pid), "--rate", "200", "--nonblocking",
        "--duration", str(max(1, int(seconds - 3))), "--format", "raw", "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def print_profile(path: Path, n: int, top: int = 25) -> None:
    """The functions the gateway spent its samples in: self (the leaf) and total (anywhere on
    the stack), from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f.split(" (", 1)[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
                  for f in stack.split(";")]  # fmt: skip
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    if not samples:
        print(f"     (no profile samples for N={n})", flush=True)
        return
    print(f"     profile of the gateway at N={n}, {samples} samples: self% total% function")
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"     {100 * count / samples:5.1f} {100 * total[name] / samples:5.1f}  {name}")


async def complete_logs(conn: asyncpg.Connection, pool: dict[str, Any]) -> int:
    """Sessions whose log has a `client.audio` event for every frame the client sent."""
    complete = 0
    for s in pool["sessions"]:
        if not s["session_id"]:
            continue
        logged = await conn.fetchval(
            "SELECT count(*) FROM session_events WHERE session_id = $1 AND kind = 'client.audio'",
            s["session_id"],
        )
        complete += int(logged == len(s["sent"]))
    return complete


def analyse(
    n: int,
    elapsed: float,
    *,
    sims: dict[str, Any],
    pool: dict[str, Any],
    cpu: dict[str, float],
    machine: float,
    rss: float,
    xact: float,
    mb_hour: float,
    complete: int,
    logged: bool = True,
) -> Result:
    received = {int(k): float(v) for k, v in sims["inbound"]}
    inbound: list[float] = []
    in_lost = 0
    for s in pool["sessions"]:
        for seq, sent in enumerate(s["sent"]):
            got = received.get((s["index"] << 32) | seq)
            if got is None:
                in_lost += 1
            else:
                inbound.append((got - sent) * 1000)
    outbound: list[float] = []
    out_lost = 0
    client_rx: dict[str, tuple[list[float], float]] = {}
    for s in pool["sessions"]:
        for rid, times in s["received"].items():
            client_rx[rid] = (times, s["last_receive"])
    for rid, sent_times in sims["outbound"].items():
        times, last = client_rx.get(rid, ([], 0.0))
        for k, sent in enumerate(sent_times):
            if k < len(times):
                outbound.append((times[k] - sent) * 1000)
            elif sent < last - 0.5:  # sent while the client was still reading
                out_lost += 1
    assert all(split_id(k)[0] < n for k in received), "a frame id names no session"
    return Result(
        n=n,
        seconds=elapsed,
        inbound=inbound,
        outbound=outbound,
        in_lost=in_lost,
        out_lost=out_lost,
        in_late=sum(x > LATE_MS for x in inbound),
        out_late=sum(x > LATE_MS for x in outbound),
        cpu_pct_session=cpu["gateway"] / n,
        gateway_cpu_pct=cpu["gateway"],
        sim_cpu_pct=cpu["sim"],
        clients_cpu_pct=cpu["clients"],
        postgres_cpu_pct=cpu["postgres"],
        driver_cpu_pct=cpu["driver+temporal"],
        machine_cpu_pct=machine,
        rss_mb_session=rss,
        xact_per_s=xact,
        mb_per_session_hour=mb_hour,
        complete=complete,
        failed=sum(bool(s["errors"]) for s in pool["sessions"]),
        send_lag_p99_ms=float(pool["send_lag_p99_ms"]),
        first_error=next((e for s in pool["sessions"] for e in s["errors"]), ""),
        logged=logged,
    )


def q(values: list[float]) -> str:
    if not values:
        return f"{'-':>22}"
    return f"{pct(values, 0.5):6.1f} {pct(values, 0.99):7.1f} {pct(values, 0.999):7.1f}"


def print_result(r: Result) -> None:
    complete = f"{r.complete}/{r.n}" if r.logged else "no log"
    if r.gateway != "this tree":
        name = r.gateway if r.gateway == RELAY else f"gateway as of {r.gateway}"
        print(f"     {name}:", flush=True)
    print(
        f"{r.n:>4} {q(r.inbound)} {q(r.outbound)} {r.in_lost:>5}/{r.in_late:<5}"
        f" {r.out_lost:>5}/{r.out_late:<5} {r.cpu_pct_session:6.2f} {r.rss_mb_session:7.2f}"
        f" {r.xact_per_s:7.0f} {r.mb_per_session_hour:7.0f}  {complete:>7}"
        f" {'yes' if r.holds() else 'no':>5}",
        flush=True,
    )
    print(
        f"     (CPU % of a core: gateway {r.gateway_cpu_pct:.0f}, simulator {r.sim_cpu_pct:.0f},"
        f" clients {r.clients_cpu_pct:.0f}, Postgres {r.postgres_cpu_pct:.0f},"
        f" worker+Temporal {r.driver_cpu_pct:.0f}, whole machine {r.machine_cpu_pct:.0f} of"
        f" {100 * (os.cpu_count() or 1)}; {len(r.inbound)} inbound and {len(r.outbound)}"
        f" outbound frames over {r.seconds:.0f} s; client send lag p99 {r.send_lag_p99_ms:.1f} ms;"
        f" {r.failed} session(s) failed)",
        flush=True,
    )
    if r.actions_per_hour is not None:
        kinds = sorted(r.actions_per_hour.items(), key=lambda kv: -kv[1])
        print(
            f"     (Temporal actions per session: {sum(r.actions_per_hour.values()):,.0f} an hour"
            " while talking ("
            + (", ".join(f"{k} {v:,.0f}" for k, v in kinds if v > 0) or "none in this window")
            + f"), plus {r.actions_fixed:.0f} to start, attach and end)",
            flush=True,
        )
    if r.first_error:
        print(f"     first failure: {r.first_error[:300]}", flush=True)


RELAY = "bare relay (floor): grpc.aio + websockets, nothing recorded"

HEADER = (
    "   N  inbound ms p50/p99/p99.9  outbound ms p50/p99/p99.9  in lost/late out lost/late"
    " cpu%/s  RSS MB/s  xact/s  MB/s·h  complete  holds"
)


@contextlib.contextmanager
def worktrees(revisions: list[str]) -> Iterator[list[tuple[str, Path | None]]]:
    """This tree, then a detached git worktree for each revision; removed afterwards."""
    made: list[tuple[str, Path | None]] = [("this tree", None)]
    try:
        for rev in revisions:
            path = Path(tempfile.mkdtemp(prefix="earpiece-gateway-"))
            subprocess.run(
                ["git", "worktree", "add", "--detach", "--force", str(path), rev],
                check=True,
                capture_output=True,
            )
            label = subprocess.run(
                ["git", "log", "-1", "--format=%h %s", rev], check=True, capture_output=True,
                text=True,
            ).stdout.strip()[:72]  # fmt: skip
            made.append((label, path))
        yield made
    finally:
        for _, tree in made[1:]:
            if tree is not None:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tree)], capture_output=True
                )


async def main(
    ns: list[int],
    seconds: float,
    *,
    profile: Path | None = None,
    gateway_at: list[str] | None = None,
    light: bool = False,
    floor: bool = False,
) -> None:
    with throwaway_settings() as settings, worktrees(gateway_at or []) as gateways:
        temporal_port, metrics_port = free_port(), free_port()
        async with (
            infrastructure(
                settings, temporal_port=temporal_port, metrics_port=metrics_port
            ) as infra,
            session_worker(client=infra.client, store=infra.store),
        ):
            env = {
                **os.environ,
                "DATABASE_URL": infra.database_url,
                "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
                "EARPIECE_API_KEY": infra.dev_key or "",
                "EARPIECE_STATE_DIR": str(settings.state_dir),
                "GRPC_ENABLE_FORK_SUPPORT": "false",
            }
            env.pop("OPENAI_API_KEY", None)
            conn = await asyncpg.connect(infra.database_url)
            # Row-level security shows a login its tenant's rows only; '*' is every tenant's.
            await conn.execute("SELECT set_config('earpiece.tenant_id', '*', false)")
            results: list[Result] = []
            harness = (
                "light harness (clients without the client library, simulator validating only"
                " the first events of each type)"
                if light
                else "default harness (client library, fully validating simulator)"
            )
            print(
                f"load: {seconds:.0f} s of real-time audio per N, one gateway process; {harness}",
                flush=True,
            )
            print(HEADER, flush=True)
            try:
                with tempfile.TemporaryDirectory(prefix="earpiece-load-") as work:
                    for n in ns:
                        runs: list[tuple[str, Path | None, bool]] = [
                            (label, tree, False) for label, tree in gateways
                        ]
                        if floor:
                            runs.append((RELAY, None, True))
                        for label, gateway_dir, relay in runs:
                            r = await one_run(
                                n,
                                seconds,
                                env=env,
                                conn=conn,
                                work=Path(work),
                                postmaster=postmaster_pid(settings.state_dir),
                                profile=profile if gateway_dir is None else None,
                                gateway_dir=gateway_dir,
                                light=light,
                                relay=relay,
                                actions=None
                                if relay
                                else lambda: temporal_actions(
                                    metrics_port, settings.temporal_namespace
                                ),
                            )
                            r.gateway = label
                            results.append(r)
                            print_result(r)
            finally:
                await conn.close()
    held = [r for r in results if r.holds() and r.gateway == "this tree"]
    best = max(held, key=lambda r: r.n) if held else None
    print(
        f"largest N holding p99 ≤ {GOAL_P99_MS:.0f} ms both ways with nothing lost: "
        f"{best.n if best else 'none of those run'}"
    )
    cores = os.cpu_count() or 1
    for r in results:
        if r.gateway != "this tree":
            continue
        saturated = r.machine_cpu_pct > 0.9 * 100 * cores
        print(
            f"  N={r.n}: gateway alone {r.gateway_cpu_pct:.0f}% of a core = "
            f"{r.cpu_pct_session:.2f}% per session"
            + (
                " (machine saturated: the gateway got what was left; not a per-session cost)"
                if saturated
                else f" (≈{100 / max(r.cpu_pct_session, 1e-9):.0f} sessions per core)"
            )
        )
    print_cost_fit([r for r in results if r.gateway == "this tree"], cores=cores)
    print_floor(results)


def print_floor(results: list[Result]) -> None:
    """The gateway's CPU per session beside the bare relay's at the same N (same run)."""
    floors = {r.n: r for r in results if r.gateway == RELAY}
    for r in results:
        f = floors.get(r.n)
        if r.gateway != "this tree" or f is None:
            continue
        print(
            f"  N={r.n}: bare relay {f.cpu_pct_session:.2f}% per session (p99 in/out"
            f" {pct(f.inbound, 0.99):.1f}/{pct(f.outbound, 0.99):.1f} ms); the gateway costs"
            f" {r.cpu_pct_session / max(f.cpu_pct_session, 1e-9):.2f} times the floor"
        )


def print_cost_fit(results: list[Result], *, cores: int) -> None:
    """Gateway CPU = fixed + per-session x N, least squares over the runs whose machine was not
    saturated: the per-process part (Temporal worker polling, the gRPC poller, timers) and the
    marginal cost of one more session, which is what sizes a cluster."""
    points = [(r.n, r.gateway_cpu_pct) for r in results if r.machine_cpu_pct <= 0.9 * 100 * cores]
    if len({n for n, _ in points}) < 2:
        return
    mean_n = sum(n for n, _ in points) / len(points)
    mean_c = sum(c for _, c in points) / len(points)
    slope = sum((n - mean_n) * (c - mean_c) for n, c in points) / sum(
        (n - mean_n) ** 2 for n, _ in points
    )
    fixed = mean_c - slope * mean_n
    fits = f"≈{(100 - fixed) / slope:.0f} sessions fill one core" if slope > 0 else ""
    print(
        f"  gateway CPU ≈ {fixed:.0f}% of a core fixed + {slope:.2f}% per session"
        f" (fit over N = {', '.join(str(n) for n, _ in points)}); {fits}"
    )


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.load")
    parser.add_argument("--quick", action="store_true", help="N = 5, 10 for 10 s each")
    parser.add_argument(
        "--sessions", type=int, nargs="*", help="the Ns (default 10 15 20 25 50 100)"
    )
    parser.add_argument("--seconds", type=float, help="paced seconds per N (default 30)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the gateway with py-spy, print its top functions, keep the stacks in DIR",
    )
    parser.add_argument(
        "--gateway-at",
        nargs="+",
        metavar="REV",
        default=[],
        help="also run the gateway as of these git revisions, side by side with this tree's",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run a bare relay (benchmarks/load/bare_relay.py) at each N: the CPU the gRPC"
        " and WebSocket libraries alone take for the same sessions",
    )
    parser.add_argument(
        "--light",
        action="store_true",
        help="a lighter simulator and client pool (for small machines); default: the faithful one",
    )
    a = parser.parse_args(argv)
    ns = a.sessions or ([5, 10] if a.quick else [10, 15, 20, 25, 50, 100])
    seconds = a.seconds or (10.0 if a.quick else 30.0)
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    asyncio.run(
        main(
            ns,
            seconds,
            profile=a.profile,
            gateway_at=a.gateway_at,
            light=a.light,
            floor=a.floor,
        )
    )
