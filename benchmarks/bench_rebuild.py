"""Link loss → a rebuilt link ready to answer, next to a bare connect + session.update in the same
run, for a short session and for the log of a 60-minute one.

The rebuild is the path every cause takes (`ModelPump._open_link`): read the conversation's
events from the log (`rebuild.load_plan`), connect, `session.update`, send the rebuilt items;
"ready" is when the simulator has added the last item (a `response.create` sent then would see
the whole conversation). The long log is synthetic but shaped like the real thing: 360 turns
(one every 10 s), a tool call every third turn, a screen change every fifth, transcript deltas,
and the microphone's 50 events a second (with a forwarded-run row per 12 frames, as the gateway
writes them), so the reads run against ~200k rows.
Goal (issue 9): at most 500 ms at p50 for the long session.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from benchmarks.common import pct, throwaway_settings
from services.gateway.model_pump import FORWARDED_ID_PREFIX, FORWARDED_KIND, run_payload
from services.gateway.rebuild import load_plan
from services.realtime.link import ModelLink
from services.realtime.simulator.scenario import Scenario
from services.realtime.simulator.server import serve_simulator
from services.runtime.app import database
from services.store.event_store import EventStore

RUNS = 15
INSTRUCTIONS = "You are a benchmark tutor. Respond conversationally, in 1-2 sentences."
ANSWER = "A fraction has two parts: the numerator on top and the denominator below it."


async def write_session(store: EventStore, session_id: str, *, turns: int, audio: bool) -> int:
    await store.create_session(
        session_id=session_id, tenant_id="bench", config={}, prompt_hash=None
    )
    writer = await store.open_writer(session_id)
    events = 0

    def add(kind: str, payload: dict[str, Any]) -> None:
        nonlocal events
        writer.append(kind=kind, source="model", payload=json.dumps(payload))
        events += 1

    for t in range(turns):
        if t % 5 == 0:
            add("client.screen_state", {"state": {"screen": f"s{t}", "step": t}, "hash": f"h{t}"})
        if audio:
            for k in range(10 * 50):  # 10 s of 20 ms frames, and a run row per 12 sent on
                add("client.audio", {})
                if k % 12 == 11:
                    run = range(k - 11, k + 1)
                    add(
                        FORWARDED_KIND,
                        run_payload([f"{FORWARDED_ID_PREFIX}{i}" for i in run], [*run]),
                    )
        user, resp, item = f"u{t}", f"r{t}", f"i{t}"
        add("model.server.input_audio_buffer.committed", {"item_id": user})
        add(
            "model.server.conversation.item.input_audio_transcription.completed",
            {"item_id": user, "transcript": f"Question number {t} about fractions, please?"},
        )
        add(
            "model.server.response.output_item.added",
            {"response_id": resp, "item": {"type": "message", "id": item}},
        )
        for word in ANSWER.split():
            add(
                "model.server.response.output_audio_transcript.delta",
                {"item_id": item, "delta": word},
            )
        add(
            "model.server.response.output_audio_transcript.done",
            {"item_id": item, "response_id": resp, "transcript": ANSWER},
        )
        if t % 3 == 0:
            call = f"call{t}"
            add(
                "model.server.response.output_item.added",
                {"response_id": resp, "item": {"type": "function_call", "call_id": call}},
            )
            add(
                "model.server.response.function_call_arguments.done",
                {"response_id": resp, "call_id": call, "name": "get_hint", "arguments": "{}"},
            )
            add(
                "decision.tool_output",
                {"call_id": call, "name": "get_hint", "output": '{"hint": "x"}'},
            )
    await writer.close()
    return events


async def rebuild_once(store: EventStore, session_id: str, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    plan = await load_plan(store.pool, session_id)
    async with ModelLink(model="gpt-realtime", simulator_url=url) as link:
        events = link.events()
        await link.configure(instructions=INSTRUCTIONS, voice="marin")
        items = plan.events()
        for event in items:
            await link.send(event)
        added = 0
        async for _raw, kind, _data in events:
            if kind == "conversation.item.added":
                added += 1
            if added >= len(items) and (items or kind == "session.updated"):
                break
        took = (time.perf_counter() - started) * 1000
    return took, len(items)


async def bare_once(url: str) -> float:
    started = time.perf_counter()
    async with ModelLink(model="gpt-realtime", simulator_url=url) as link:
        events = link.events()
        await link.configure(instructions=INSTRUCTIONS, voice="marin")
        async for _raw, kind, _data in events:
            if kind == "session.updated":
                break
        took = (time.perf_counter() - started) * 1000
    return took


async def main() -> None:
    with throwaway_settings() as settings:
        async with database(settings) as (url, _key):
            store = await EventStore.open(url)
            sim = await serve_simulator(
                host="127.0.0.1",
                port=0,
                scenario=Scenario.from_dict({"name": "bench-rebuild", "responses": []}),
                realtime_pacing=False,
            )
            try:
                short_rows = await write_session(store, "bench-short", turns=6, audio=True)
                written = time.perf_counter()
                long_rows = await write_session(store, "bench-hour", turns=360, audio=True)
                took_s = time.perf_counter() - written
                print(f"wrote a 60-minute log: {long_rows:,} events in {took_s:.1f}s")
                results: dict[str, list[float]] = {"bare": [], "short": [], "hour": []}
                items: dict[str, int] = {}
                for _ in range(RUNS):  # interleaved, so machine load falls on all three alike
                    results["bare"].append(await bare_once(sim.url))
                    took, items["short"] = await rebuild_once(store, "bench-short", sim.url)
                    results["short"].append(took)
                    took, items["hour"] = await rebuild_once(store, "bench-hour", sim.url)
                    results["hour"].append(took)
            finally:
                await sim.stop()
                await store.close()
    print(f"link lost → rebuilt link ready, {RUNS} runs each (ms)")
    print(f"{'':52}{'p50':>9}{'p99':>9}")
    rows = [
        ("bare connect + session.update", "bare", ""),
        (f"rebuild, short session ({short_rows} events)", "short", f"{items['short']} items"),
        (f"rebuild, 60-minute session ({long_rows:,} events)", "hour", f"{items['hour']} items"),
    ]
    for label, key, note in rows:
        print(f"{label:52}{pct(results[key], 0.5):9.1f}{pct(results[key], 0.99):9.1f}  {note}")
    print(f"60-minute rebuild p50 {pct(results['hour'], 0.5):.0f} ms (goal ≤ 500 ms)")


if __name__ == "__main__":
    asyncio.run(main())
