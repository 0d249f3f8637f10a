"""Deterministic speech-shaped audio: PCM16 mono little-endian at 24 kHz.

The simulator needs audio that behaves like speech for everything that looks at energy (its own
VAD, a client's echo gate, playback timing), without a TTS model and without network. Each word
becomes one or more voiced syllables (a few harmonics of a gliding pitch under a raised-cosine
envelope), words are separated by short quiet gaps, punctuation by longer ones, and the duration
grows with the text. The same text always gives the same bytes.
"""

from __future__ import annotations

import math
import random
import re
import sys
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "BYTES_PER_MS",
    "SAMPLE_RATE",
    "SpokenAudio",
    "WordSpan",
    "pcm_duration_ms",
    "silence",
    "synthesize_speech",
    "synthesize_utterance",
]

SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2
BYTES_PER_MS = SAMPLE_RATE * BYTES_PER_SAMPLE // 1000  # 48

_PEAK = 0.32 * 32767
_HARMONIC_WEIGHTS = (1.0, 0.55, 0.3, 0.16)
_WORD = re.compile(r"\S+\s*")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+", re.IGNORECASE)
_DEFAULT_USER_PITCH_HZ = 125.0


@dataclass(frozen=True, slots=True)
class WordSpan:
    """Where one word (with its trailing space) sits in the audio, for transcript pacing."""

    text: str
    start_ms: float
    end_ms: float


@dataclass(frozen=True, slots=True)
class SpokenAudio:
    pcm: bytes
    words: tuple[WordSpan, ...]

    @property
    def duration_ms(self) -> float:
        return pcm_duration_ms(self.pcm)


def pcm_duration_ms(pcm: bytes) -> float:
    return len(pcm) / BYTES_PER_MS


def silence(ms: float) -> bytes:
    """`ms` of digital silence, rounded to whole samples."""
    return bytes(round(ms * SAMPLE_RATE / 1000) * BYTES_PER_SAMPLE)


def synthesize_speech(text_or_duration: str | float, *, pitch_hz: float | None = None) -> bytes:
    """Speech-shaped audio for a line of text, or for a duration in seconds (a float or int).

    Used to "speak" into the simulator's VAD: the result starts and ends on voiced sound, so the
    caller adds `silence()` around it to end the turn.
    """
    pitch = _DEFAULT_USER_PITCH_HZ if pitch_hz is None else pitch_hz
    if isinstance(text_or_duration, str):
        return synthesize_utterance(text_or_duration, pitch_hz=pitch).pcm
    return _babble(float(text_or_duration), pitch_hz=pitch)


@lru_cache(maxsize=256)
def synthesize_utterance(text: str, *, pitch_hz: float = 180.0) -> SpokenAudio:
    """Audio for `text` with each word's position, so transcript deltas can follow the audio."""
    words = _WORD.findall(text.strip())
    if not words:
        raise ValueError("cannot synthesise speech for empty text")
    rng = random.Random(zlib.crc32(f"{pitch_hz}:{text}".encode()))
    samples = array("h")
    spans: list[WordSpan] = []
    total_syllables = sum(_syllable_count(word) for word in words)
    spoken_syllables = 0
    for word in words:
        start_ms = len(samples) * 1000 / SAMPLE_RATE
        syllables = _syllable_count(word)
        for index in range(syllables):
            # A falling pitch across the utterance (declination), with a little per-syllable jitter.
            progress = spoken_syllables / max(1, total_syllables)
            f0 = pitch_hz * (1.12 - 0.22 * progress) * rng.uniform(0.95, 1.05)
            _append_syllable(samples, f0=f0, duration_ms=rng.uniform(150, 230), rng=rng)
            spoken_syllables += 1
            if index < syllables - 1:
                _append_quiet(samples, ms=rng.uniform(15, 35))
        end_ms = len(samples) * 1000 / SAMPLE_RATE
        if word is not words[-1]:
            _append_quiet(samples, ms=_gap_after(word, rng))
        spans.append(WordSpan(text=word, start_ms=start_ms, end_ms=end_ms))
    return SpokenAudio(pcm=_little_endian(samples), words=tuple(spans))


@lru_cache(maxsize=64)
def _babble(seconds: float, *, pitch_hz: float) -> bytes:
    """Syllables and word gaps that fill `seconds` exactly."""
    if seconds <= 0:
        raise ValueError("duration must be positive")
    target = round(seconds * SAMPLE_RATE)
    rng = random.Random(zlib.crc32(f"babble:{pitch_hz}:{seconds}".encode()))
    samples = array("h")
    while len(samples) < target:
        remaining_ms = (target - len(samples)) * 1000 / SAMPLE_RATE
        _append_syllable(
            samples,
            f0=pitch_hz * rng.uniform(0.9, 1.1),
            duration_ms=min(remaining_ms, rng.uniform(150, 230)),
            rng=rng,
        )
        remaining_ms = (target - len(samples)) * 1000 / SAMPLE_RATE
        if remaining_ms > 120:
            _append_quiet(samples, ms=rng.uniform(40, 80))
    del samples[target:]
    return _little_endian(samples)


def _little_endian(samples: array[int]) -> bytes:
    """PCM16 on the wire is little-endian whatever the host's byte order."""
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _syllable_count(word: str) -> int:
    letters = re.sub(r"[^A-Za-z]", "", word)
    if not letters:
        return 1  # numbers and symbols are still spoken
    groups = len(_VOWEL_GROUPS.findall(letters))
    if letters.lower().endswith("e") and groups > 1:
        groups -= 1  # a silent final e
    return max(1, min(groups, 6))


def _gap_after(word: str, rng: random.Random) -> float:
    stripped = word.rstrip()
    if stripped.endswith((".", "!", "?")):
        return rng.uniform(260, 340)
    if stripped.endswith((",", ";", ":")):
        return rng.uniform(140, 190)
    return rng.uniform(45, 90)


def _append_quiet(samples: array[int], *, ms: float) -> None:
    samples.extend(_zero_samples(round(ms * SAMPLE_RATE / 1000)))


def _zero_samples(count: int) -> array[int]:
    return array("h", bytes(count * BYTES_PER_SAMPLE))


def _append_syllable(
    samples: array[int], *, f0: float, duration_ms: float, rng: random.Random
) -> None:
    """One voiced syllable: a single pitch period built from harmonics, repeated under an
    envelope with a short attack and a longer decay (a vowel's energy shape)."""
    count = max(1, round(duration_ms * SAMPLE_RATE / 1000))
    period = max(2, round(SAMPLE_RATE / f0))
    # Vary the harmonic balance per syllable so successive vowels differ in timbre.
    weights = [w * rng.uniform(0.7, 1.3) for w in _HARMONIC_WEIGHTS]
    norm = sum(weights)
    cycle = [
        sum(w * math.sin(2 * math.pi * (h + 1) * i / period) for h, w in enumerate(weights)) / norm
        for i in range(period)
    ]
    loudness = _PEAK * rng.uniform(0.75, 1.0)
    attack = max(1, count // 6)
    decay = max(1, count // 3)
    sustain_end = count - decay
    out = array("h", bytes(count * BYTES_PER_SAMPLE))
    for i in range(count):
        if i < attack:
            envelope = 0.5 - 0.5 * math.cos(math.pi * i / attack)
        elif i >= sustain_end:
            envelope = 0.5 + 0.5 * math.cos(math.pi * (i - sustain_end) / decay)
        else:
            envelope = 1.0
        out[i] = int(loudness * envelope * cycle[i % period])
    samples.extend(out)
