"""The `earpiece` command.

earpiece dev        Postgres, Temporal, worker and gateway in one process tree, until Ctrl-C
earpiece migrate    apply the SQL migrations
earpiece gateway    the gRPC gateway (and its command worker)
earpiece worker     the session workflow worker
earpiece demo       a scripted live session on the embedded defaults, then its timeline
earpiece simulator  the local Realtime simulator, alone
earpiece replay ID  a session's timeline, from the event log (also: export, sessions search,
                    audit, retention, viewer, rerun; see services/replay/cli.py)
earpiece keys create|list|revoke   API keys (create prints the new key once)
earpiece persona compile FILE / earpiece prompt lint FILE
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from services.runtime.grpc_env import configure_grpc_core

configure_grpc_core()  # before anything imports grpc

from services.runtime.config import ConfigError, Settings

log = logging.getLogger("earpiece")


def interrupted() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets, its handlers installed now. Call it before printing
    that Ctrl-C stops the command: a caller that signals as soon as it reads that line (a
    supervisor, a test) must never find the signal lost in between."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from services.runtime.postgres import check_reachable, database_url
    from services.store.migrations import apply_migrations

    async with database_url(settings) as url:  # as the schema's owner
        owner = settings.database_owner_url or url
        await check_reachable(
            owner, variable="DATABASE_OWNER_URL" if settings.database_owner_url else "DATABASE_URL"
        )
        applied = await apply_migrations(owner)
    print(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "up to date")
    return 0


async def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from services.runtime.app import infrastructure
    from services.runtime.telemetry import setup_telemetry
    from workflows.retention import ensure_retention_schedule
    from workflows.worker import session_worker

    telemetry = setup_telemetry(service_name="earpiece-worker")
    try:
        async with (
            infrastructure(settings) as infra,
            session_worker(client=infra.client, store=infra.store),
        ):
            await ensure_retention_schedule(infra.client)  # audio retention, hourly
            stop = interrupted()
            print("worker running; Ctrl-C stops it", flush=True)
            await stop.wait()
    finally:
        telemetry.shutdown()
    return 0


async def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from services.runtime.app import infrastructure, serving_gateway
    from services.runtime.telemetry import grpc_server_interceptors, setup_telemetry

    telemetry = setup_telemetry(service_name="earpiece-gateway")
    try:
        async with (
            infrastructure(settings) as infra,
            serving_gateway(
                infra, address=settings.grpc_address, interceptors=grpc_server_interceptors()
            ) as (gw, _),
        ):
            stop = interrupted()
            print(f"gateway listening on {gw.address}; Ctrl-C stops it", flush=True)
            await stop.wait()
    finally:
        telemetry.shutdown()
    return 0


async def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from services.runtime.app import infrastructure, serving_gateway
    from services.runtime.postgres import redact
    from services.runtime.telemetry import grpc_server_interceptors, setup_telemetry
    from workflows.retention import ensure_retention_schedule
    from workflows.worker import session_worker

    telemetry = setup_telemetry(service_name="earpiece-dev")
    try:
        async with (
            infrastructure(settings) as infra,
            session_worker(client=infra.client, store=infra.store),
            serving_gateway(
                infra, address=settings.grpc_address, interceptors=grpc_server_interceptors()
            ) as (gw, simulator_url),
        ):
            await ensure_retention_schedule(infra.client)  # audio retention, hourly
            print(f"earpiece dev: gRPC on {gw.address}", flush=True)
            print(f"  Postgres: {redact(infra.database_url)}", flush=True)
            if infra.dev_key_file is not None:
                print(f"  API key:  {infra.dev_key_file} (admin; clients read it)", flush=True)
            print(f"  Temporal: {settings.temporal_address or '127.0.0.1:7233 (embedded)'}")
            print(f"  model:    {simulator_url or 'OpenAI Realtime'}", flush=True)
            print(f"  state:    {settings.state_dir}", flush=True)
            stop = interrupted()
            print("Ctrl-C stops everything.", flush=True)
            await stop.wait()
    finally:
        telemetry.shutdown()
    return 0


Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earpiece", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, tuple[Command, str]] = {
        "dev": (cmd_dev, "run Postgres, Temporal, worker and gateway until Ctrl-C"),
        "migrate": (cmd_migrate, "apply the SQL migrations"),
        "gateway": (cmd_gateway, "run the gRPC gateway"),
        "worker": (cmd_worker, "run the session workflow worker"),
    }
    for name, (func, help_text) in commands.items():
        sub.add_parser(name, help=help_text).set_defaults(run=func)
    from services.replay.cli import add_replay_cli

    add_replay_cli(sub)
    from services.auth.cli import add_keys_cli

    add_keys_cli(sub)
    from services.demo import add_demo_cli

    add_demo_cli(sub)
    from services.prompts.cli import add_prompt_cli
    from services.realtime.simulator.cli import add_simulator_cli

    add_prompt_cli(sub)
    add_simulator_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "run"):
            return asyncio.run(args.run(Settings.from_env(), args))
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"earpiece: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
