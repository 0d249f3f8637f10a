"""What the benchmarks share: a throwaway state folder for the embedded servers, percentiles."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.runtime.config import Settings


@contextmanager
def throwaway_settings() -> Iterator[Settings]:
    """Settings whose embedded Postgres and Temporal live in a temporary folder, removed after."""
    state = Path(tempfile.mkdtemp(prefix="earpiece-bench-"))
    try:
        yield Settings.from_env({"EARPIECE_STATE_DIR": str(state)})
    finally:
        shutil.rmtree(state, ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
