"""The CLI as a user meets it: unreachable servers give one line naming the variable to check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from temporalio.client import Client

from services.runtime.postgres import with_user

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
        "keys",
    ):
        assert command in result.stdout


def test_keys_create_prints_the_key_once_and_list_shows_only_ids(pg_url: str) -> None:
    env = {"DATABASE_URL": pg_url}
    created = run_cli("keys", "create", "--tenant", "cli-test", "--role", "analyst", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert re.fullmatch(r"ep_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key), created.stdout
    key_id, secret = key[:19], key[20:]
    assert "only this once" in created.stderr and key not in created.stderr

    listed = run_cli("keys", "list", "--tenant", "cli-test", env=env)
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout and "analyst" in listed.stdout
    assert secret not in listed.stdout + listed.stderr

    revoked = run_cli("keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked {key_id}" in revoked.stdout
    assert secret not in revoked.stdout + revoked.stderr
    relisted = run_cli("keys", "list", "--tenant", "cli-test", env=env)
    assert relisted.stdout.splitlines()[1].split()[5] != "-"  # a revocation time now

    bad = run_cli("keys", "create", "--tenant", "no spaces", "--role", "client", env=env)
    assert bad.returncode == 2 and "tenant id" in bad.stderr


def test_dev_prints_no_secret(pg_url: str, temporal: Client, tmp_path: Path) -> None:
    password = "s3cret-Pa55word"
    url = with_user(pg_url, "postgres", password)  # trust auth here: the password is ignored
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TEMPORAL_ADDRESS": temporal.service_client.config.target_host,
        "EARPIECE_GRPC_ADDRESS": "127.0.0.1:0",
        "EARPIECE_STATE_DIR": str(tmp_path),
        "OPENAI_API_KEY": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    output = "".join(lines) + rest
    assert "Ctrl-C stops everything" in output, output
    assert password not in output
    assert "postgres:***@" in output
