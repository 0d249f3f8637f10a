"""The analyst's CLI against the recorded session, as the command line runs it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import wave
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from services.cli import main
from tests.replay.conftest import Recorded


async def earpiece(pg_url: str, *args: str) -> tuple[int, str, str]:
    """Runs `earpiece ARGS` as the command line does (its own event loop, in a thread here)."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with redirect_stdout(out), redirect_stderr(err):
            return main(list(args))

    os.environ["DATABASE_URL"] = pg_url
    try:
        code = await asyncio.to_thread(run)
    finally:
        del os.environ["DATABASE_URL"]
    return code, out.getvalue(), err.getvalue()


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

    code, out, _ = await earpiece(pg_url, "retention", "set", "cli-t", "3650")
    assert code == 0 and "3650 day" in out
    code, out, _ = await earpiece(pg_url, "retention", "show")
    assert code == 0 and "cli-t" in out
    code, out, _ = await earpiece(pg_url, "retention", "run")
    assert code == 0 and "events kept" in out

    code, _, err = await earpiece(pg_url, "replay", "no-such-session")
    assert code == 1 and "no session" in err
