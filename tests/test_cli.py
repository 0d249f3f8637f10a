"""The CLI as a user meets it: unreachable servers give one line naming the variable to check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def test_unreachable_postgres_is_one_clear_line(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        env={
            "DATABASE_URL": "postgresql://earpiece@127.0.0.1:1/earpiece",
            "EARPIECE_STATE_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DATABASE_URL" in lines[0]
    assert "Traceback" not in result.stderr


def test_unreachable_temporal_is_one_clear_line(tmp_path: Path, pg_url: str) -> None:
    result = run_cli(
        "worker",
        env={
            "DATABASE_URL": pg_url,
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
            "EARPIECE_STATE_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TEMPORAL_ADDRESS" in lines[0]


def test_help_lists_the_commands() -> None:
    result = run_cli("--help", env={})
    assert result.returncode == 0
    for command in (
        "dev",
        "migrate",
        "gateway",
        "worker",
        "demo",
        "simulator",
        "persona",
        "prompt",
    ):
        assert command in result.stdout
