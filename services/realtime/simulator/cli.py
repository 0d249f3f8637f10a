"""`earpiece simulator`: run the Realtime simulator on its own.

Wire it into the main CLI with `add_simulator_cli(subparsers)` and call the `func` default it
sets with the parsed namespace, or run `python -m services.realtime.simulator`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from services.realtime.simulator.scenario import (
    ScenarioError,
    builtin_scenario_names,
    load_scenario,
)
from services.realtime.simulator.server import serve_simulator

__all__ = ["add_simulator_cli", "main", "run_simulator_command"]

DEFAULT_PORT = 8765


def add_simulator_cli(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register the `simulator` subcommand; its `func` default is `run_simulator_command`."""
    parser = subparsers.add_parser(
        "simulator",
        help="run the local Realtime simulator (GA protocol over a WebSocket)",
        description=(
            "Serve the GA Realtime protocol at ws://HOST:PORT/v1/realtime for the official SDK "
            "(websocket_base_url ws://HOST:PORT/v1), scripted by a scenario file."
        ),
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_simulator_command)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--scenario",
        default="tutoring",
        help=f"a scenario YAML file, or a built-in name ({', '.join(builtin_scenario_names())})",
    )
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument(
        "--realtime",
        dest="pacing",
        action="store_const",
        const="realtime",
        help="send audio at the pace it would be generated (default: the scenario's pacing)",
    )
    pacing.add_argument(
        "--fast",
        dest="pacing",
        action="store_const",
        const="fast",
        help="send audio as fast as possible",
    )


def run_simulator_command(args: argparse.Namespace) -> int:
    """Run until interrupted (Ctrl-C or SIGTERM). Returns the process exit code."""
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"earpiece simulator: {exc}", file=sys.stderr)
        return 2
    pacing = args.pacing or scenario.session.pacing
    try:
        return asyncio.run(_serve(args.host, args.port, scenario_name=args.scenario, pacing=pacing))
    except KeyboardInterrupt:
        return 0


async def _serve(host: str, port: int, *, scenario_name: str, pacing: str) -> int:
    scenario = load_scenario(scenario_name)
    try:
        server = await serve_simulator(
            host=host, port=port, scenario=scenario, realtime_pacing=pacing == "realtime"
        )
    except OSError as exc:
        print(
            f"earpiece simulator: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr
        )
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    print(
        f"Realtime simulator on {server.url} (scenario {scenario.name!r}, {pacing} pacing).\n"
        f'Connect with AsyncOpenAI(api_key="sim", websocket_base_url="{server.url}"). '
        "Ctrl-C stops it.",
        flush=True,
    )
    await stop.wait()
    await server.stop()
    print(f"Stopped after {len(server.sessions)} connection(s).", flush=True)
    return 1 if server.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="earpiece simulator")
    _add_arguments(parser)
    return run_simulator_command(parser.parse_args(argv))
