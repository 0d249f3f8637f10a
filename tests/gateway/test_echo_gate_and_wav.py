"""The echo gate keeps the user's mic from the model while assistant audio plays; the client
library streams a WAV file frame by frame."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from services.client import EarpieceClient, read_wav_frames
from services.gateway.model_pump import FORWARDED_KIND, forwarded_frames
from services.realtime.simulator.voice import silence, synthesize_speech
from services.store.event_store import EventStore
from tests.gateway.live_helpers import GatewayFor, simulator, speak
from tests.gateway.test_session_api import BRIEFING


async def test_echo_gate_records_but_does_not_forward_while_assistant_plays(
    gateway_for: GatewayFor, store: EventStore
) -> None:
    async with (
        simulator("tutoring", realtime=True) as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        started = await client.start_session(
            tenant_id="acme", instructions=BRIEFING, echo_gate=True
        )
        session_id = started.session.session_id
        async with client.attach(session_id) as stream:
            await speak(stream, "Hi! Can you help me?")
            await sim.sessions[0].wait_for_sent("response.output_audio.delta", count=3)
            # The mic picks up the assistant: quiet frames while it plays.
            await stream.stream_audio([silence(20)] * 25, realtime=True)
            await client.end_session(session_id)
    events = [e async for e in store.read_events(session_id)]
    audio = [e for e in events if e.kind == "client.audio"]
    gated = [e for e in audio if e.payload.get("echo_gated")]
    forwarded = [
        frame for e in events if e.kind == FORWARDED_KIND for frame in forwarded_frames(e.payload)
    ]
    # The 25 frames sent while it played were all held back (so were any of the trailing
    # silence after the user's turn that arrived once the response had started).
    assert all(e.payload.get("echo_gated") for e in audio[-25:])
    assert not any(e.payload.get("echo_gated") for e in audio[:10])
    assert len(forwarded) == len(audio) - len(gated)


async def test_stream_wav_sends_the_file_in_frames(
    gateway_for: GatewayFor, store: EventStore, tmp_path: Path
) -> None:
    pcm = synthesize_speech("Hello there.") + silence(500)
    path = tmp_path / "hello.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24_000)
        wav.writeframes(pcm)
    assert b"".join(read_wav_frames(path)) == pcm
    async with (
        simulator("tutoring") as sim,
        gateway_for(sim.url) as gw,
        EarpieceClient.connect(gw.address) as client,
    ):
        session_id = (
            await client.start_session(tenant_id="acme", instructions=BRIEFING)
        ).session.session_id
        async with client.attach(session_id) as stream:
            await stream.stream_wav(path, realtime=False)
            await asyncio.sleep(0.2)
            await client.end_session(session_id)
    assert await store.read_audio_bytes(session_id, stream="input") == pcm
