"""The load benchmark's simulator process: the Realtime simulator at real-time pacing, plus a
task that drains each connection's wire record (it keeps every message it sent and received,
with its `time.monotonic()`) into frame timestamps:
- inbound: frame id (from the audio samples) → when the simulator received its append;
- outbound: response id → when each `response.output_audio.delta` was sent, in order.
On SIGTERM it writes them as JSON to --out. The simulator's behaviour is not changed.

`--light`: the simulator checks only the first few events of each type per connection against
the SDK's types (`validate_first`), not every audio frame each way; the conversation it plays
is the same.

python -m benchmarks.load.simulator --out FILE [--light]   (prints its URL on the first line)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
from pathlib import Path
from typing import Any

from benchmarks.load.frames import APPEND_PREFIX, DELTA_PREFIX, id_from_append
from services.realtime.simulator.scenario import Scenario
from services.realtime.simulator.server import SimulatorServer, serve_simulator

RESPONSE_ID = re.compile(r'"response_id":"([^"]+)"')


def scenario() -> Scenario:
    return Scenario.from_dict(
        {
            "name": "load",
            "session": {"pacing": "realtime", "generation_speed": 1.0, "audio_delta_ms": 20},
            "user_utterances": ["Is this right?"] * 20_000,
            "responses": [{"say": "Yes, that is right. Keep going."}] * 20_000,
        }
    )


class Recorder:
    def __init__(self) -> None:
        self.inbound: dict[int, float] = {}
        self.outbound: dict[str, list[float]] = {}

    def drain(self, server: SimulatorServer) -> None:
        for session in server.sessions:
            records, session.wire = session.wire, []
            for r in records:
                if r.direction == "received":
                    if r.text.startswith(APPEND_PREFIX):
                        fid = id_from_append(r.text)
                        if fid is not None:
                            self.inbound.setdefault(fid, r.monotonic_s)
                elif r.text.startswith(DELTA_PREFIX):
                    m = RESPONSE_ID.search(r.text, 0, 400)
                    if m:
                        self.outbound.setdefault(m.group(1), []).append(r.monotonic_s)


LIGHT_VALIDATE_FIRST = 3


async def run(*, light: bool = False) -> dict[str, Any]:
    server = await serve_simulator(
        host="127.0.0.1",
        port=0,
        scenario=scenario(),
        realtime_pacing=True,
        validate_first=LIGHT_VALIDATE_FIRST if light else None,
    )
    print(server.url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    recorder = Recorder()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.25)
        recorder.drain(server)
    await server.stop()
    recorder.drain(server)
    return {
        "inbound": [[k, v] for k, v in recorder.inbound.items()],
        "outbound": recorder.outbound,
        "connections": len(server.sessions),
        "failures": [repr(f) for f in server.failures],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.load.simulator")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--light", action="store_true", help="validate only the first events")
    a = parser.parse_args()
    a.out.write_text(json.dumps(asyncio.run(run(light=a.light))))


if __name__ == "__main__":
    main()
