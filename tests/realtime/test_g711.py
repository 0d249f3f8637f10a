"""The simulator's table-driven G.711 codec: bit-exact with the reference where one exists."""

from __future__ import annotations

import importlib
import warnings
from array import array
from types import ModuleType

import pytest

from services.realtime.simulator.g711 import (
    G711Law,
    decode_g711,
    encode_g711,
    g711_to_pcm24k,
    pcm24k_to_g711,
)
from services.realtime.simulator.voice import synthesize_speech


def _audioop() -> ModuleType | None:
    """CPython's own G.711 (removed in 3.13): the reference where it still exists."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


ALL_SAMPLES = array("h", range(-32768, 32768))


@pytest.mark.parametrize("law", ["audio/pcmu", "audio/pcma"])
def test_every_sample_and_code_matches_audioop(law: G711Law) -> None:
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop is gone on this Python (3.13+)")
    encode, decode = (
        (audioop.lin2ulaw, audioop.ulaw2lin)
        if law == "audio/pcmu"
        else (audioop.lin2alaw, audioop.alaw2lin)
    )
    assert encode_g711(ALL_SAMPLES, law) == encode(ALL_SAMPLES.tobytes(), 2)
    codes = bytes(range(256))
    assert decode_g711(codes, law).tobytes() == decode(codes, 2)


@pytest.mark.parametrize("law", ["audio/pcmu", "audio/pcma"])
def test_codes_survive_a_round_trip(law: G711Law) -> None:
    codes = bytes(range(256))
    round_trip = encode_g711(decode_g711(codes, law), law)
    if law == "audio/pcmu":
        # 0x7F and 0xFF are both zero in μ-law; zero encodes as 0xFF.
        assert round_trip == codes.replace(b"\x7f", b"\xff")
    else:
        assert round_trip == codes


@pytest.mark.parametrize("law", ["audio/pcmu", "audio/pcma"])
def test_speech_through_8_khz_keeps_its_length_and_shape(law: G711Law) -> None:
    pcm = synthesize_speech("Is this right?")
    coded = pcm24k_to_g711(pcm, law)
    assert len(coded) == -(-len(pcm) // 6)
    back = g711_to_pcm24k(coded, law)
    assert len(back) == 6 * len(coded)
    original, restored = array("h", pcm), array("h", back[: len(pcm)])
    energy = sum(s * s for s in original)
    error = sum((a - b) ** 2 for a, b in zip(original, restored, strict=True))
    assert error / energy < 0.05  # speech-band audio survives 8 kHz and 8 bits
