"""`python -m services.realtime.simulator` (what `earpiece simulator` runs), as a process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

from openai import AsyncOpenAI


async def test_the_simulator_runs_alone_and_stops_on_sigint() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.realtime.simulator",
        "--port",
        "0",
        "--scenario",
        "tutoring",
        "--fast",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = re.search(r"(ws://127\.0\.0\.1:\d+/v1)", banner)
        assert match, banner
        assert "tutoring" in banner and "fast pacing" in banner
        client = AsyncOpenAI(api_key="sim", websocket_base_url=match.group(1))
        connection = await client.realtime.connect(model="gpt-realtime").enter()
        created = json.loads(await connection.recv_bytes())
        assert created["type"] == "session.created"
        await connection.send_raw('{"type":"response.create"}')
        while json.loads(await connection.recv_bytes())["type"] != "response.done":
            pass
        await connection.close()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    assert process.stdout is not None
    tail = (await process.stdout.read()).decode()
    assert "Stopped after 1 connection(s)." in tail


async def test_a_bad_scenario_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nresponses: [{say: hi, sing: true}]\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.realtime.simulator",
        "--scenario",
        str(bad),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "sing" in stderr.decode() and "bad.yaml" in stderr.decode()
