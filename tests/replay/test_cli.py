"""The analyst's CLI against the recorded session, as a person runs it (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
from pathlib import Path

from tests.replay.conftest import Recorded


async def earpiece(pg_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": pg_url, "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_replay_export_search_and_audit(
    pg_url: str, recorded: Recorded, tmp_path: Path
) -> None:
    sid = recorded.session_id
    code, out, err = await earpiece(pg_url, "replay", sid)
    assert code == 0, err
    assert "barge-in" in out and "highlight_element" in out and "first audio" in out

    code, out, _ = await earpiece(pg_url, "replay", sid, "--json")
    assert code == 0 and json.loads(out)["session_id"] == sid

    wav, jsonl = tmp_path / "s.wav", tmp_path / "s.jsonl"
    code, _, err = await earpiece(pg_url, "export", sid, "--wav", str(wav), "--jsonl", str(jsonl))
    assert code == 0, err
    with wave.open(str(wav)) as w:
        assert w.getnchannels() == 2
    lines = jsonl.read_text().splitlines()
    assert len(lines) == len(recorded.events)
    assert json.loads(lines[0])["kind"] == recorded.events[0].kind

    code, out, _ = await earpiece(
        pg_url, "sessions", "search", "--tenant", "replay-t", "--text", "fractions", "--json"
    )
    assert code == 0 and sid in {row["session_id"] for row in json.loads(out)}

    code, out, _ = await earpiece(pg_url, "audit", "--session", sid, "--json")
    actions = {row["action"] for row in json.loads(out)}
    assert {"get_timeline", "export_audio", "export_events"} <= actions
    assert all(row["key_id"].startswith("local:") or row["peer"] for row in json.loads(out))

    code, _, err = await earpiece(pg_url, "replay", "no-such-session")
    assert code == 1 and "no session" in err
