"""Runs every `benchmarks/bench_*.py` module's `main()` in turn, each in its own event loop."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from pathlib import Path

from services.runtime.grpc_env import configure_grpc_core

configure_grpc_core()  # before a benchmark imports grpc: the gateway's production settings


def bench_modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return [f"{__package__ or 'benchmarks'}.{p.stem}" for p in sorted(here.glob("bench_*.py"))]


def main(argv: list[str]) -> int:
    """Runs all benchmarks, or those whose module name contains one of `argv`'s words."""
    names = [n for n in bench_modules() if not argv or any(word in n for word in argv)]
    if not names:
        print(f"no benchmark matches {argv}", file=sys.stderr)
        return 2
    for name in names:
        module = importlib.import_module(name)
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        asyncio.run(module.main())
        print(f"== {name} done in {time.perf_counter() - started:.1f}s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
