"""Energy-based server VAD with hysteresis, timed by byte position in the input stream.

The real server reports `audio_start_ms`/`audio_end_ms` as milliseconds of audio written to the
input buffer since the session began (not wall-clock time), with the prefix padding included in
the start and the silence duration included in the end. This VAD does the same from the bytes it
is fed, so the numbers are exact and reproducible however the client chunks its frames.

Levels: the session's `threshold` (0..1) maps linearly onto -60..-10 dBFS of frame RMS to start
speech; speech ends below a level 6 dB lower (hysteresis), after `silence_duration_ms` of it.

`semantic_vad` uses the same detector with a different end-of-turn rule: it judges whether the
words so far sound finished. The simulator knows what the user is scripted to say, so it asks
`semantic_silence_ms`: a line that ends like a sentence ends the turn after a short pause, one
that trails off (no final punctuation, a comma, "um", "and") is waited on much longer, and
`eagerness` scales both (OpenAI documents 8 s, 4 s and 2 s as the longest waits for low, medium
and high).
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass

from services.realtime.simulator.voice import BYTES_PER_MS

__all__ = [
    "SEMANTIC_WAITS_MS",
    "EnergyVad",
    "SpeechStarted",
    "SpeechStopped",
    "VadSettings",
    "semantic_silence_ms",
    "threshold_to_rms",
]

FRAME_MS = 10
_FRAME_BYTES = FRAME_MS * BYTES_PER_MS
_FULL_SCALE = 32768.0
_HYSTERESIS_DB = 6.0
_FRAMES_TO_START = 3  # 30 ms of sound before speech counts, so clicks do not start a turn


SEMANTIC_WAITS_MS: dict[str, tuple[int, int]] = {
    # eagerness: (silence that ends a finished sentence, silence that ends a trailing one)
    "high": (250, 2000),
    "medium": (700, 4000),
    "auto": (700, 4000),
    "low": (1500, 8000),
}
_TRAILING_WORDS = {"and", "but", "so", "or", "um", "uh", "umm", "er", "because", "the", "a", "to"}


def semantic_silence_ms(eagerness: str, text: str | None) -> int:
    """How much trailing silence semantic VAD waits for before ending a turn that says `text`
    (None: nothing scripted, judged finished)."""
    finished_ms, trailing_ms = SEMANTIC_WAITS_MS.get(eagerness, SEMANTIC_WAITS_MS["auto"])
    if text is None:
        return finished_ms
    stripped = text.rstrip()
    last_word = stripped.rstrip(".,!?;:-… ").rsplit(" ", 1)[-1].lower()
    sounds_finished = stripped.endswith((".", "!", "?")) and last_word not in _TRAILING_WORDS
    return finished_ms if sounds_finished else trailing_ms


@dataclass(frozen=True, slots=True)
class VadSettings:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int


def threshold_to_rms(threshold: float) -> float:
    """Frame RMS (0..1 of full scale) at which speech starts for a session `threshold`."""
    clamped = min(1.0, max(0.0, threshold))
    return 10 ** ((-60.0 + 50.0 * clamped) / 20)


class EnergyVad:
    """Feed it appended PCM16; it returns speech start/stop events as they are decided."""

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self._start_rms = threshold_to_rms(settings.threshold)
        self._stop_rms = self._start_rms * 10 ** (-_HYSTERESIS_DB / 20)
        self._pending = b""
        self._bytes_seen = 0  # whole frames analysed, in bytes since the session began
        self._floor_ms = 0  # speech cannot start before the last commit or clear
        self._speaking = False
        self._loud_run = 0
        self._loud_run_start_ms = 0
        self._quiet_run_ms = 0
        self._turn_silence_ms: int | None = None

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def position_ms(self) -> int:
        return self._bytes_seen // BYTES_PER_MS

    def reconfigure(self, settings: VadSettings) -> None:
        self.settings = settings
        self._start_rms = threshold_to_rms(settings.threshold)
        self._stop_rms = self._start_rms * 10 ** (-_HYSTERESIS_DB / 20)

    def set_turn_silence(self, silence_ms: int | None) -> None:
        """End the current turn after this much silence instead of the settings' (semantic VAD
        decides it per turn); None goes back to `silence_duration_ms`."""
        self._turn_silence_ms = silence_ms

    def reset(self, *, at_ms: int) -> None:
        """Forget any speech in progress (the buffer was committed or cleared by the client)."""
        self._speaking = False
        self._loud_run = 0
        self._quiet_run_ms = 0
        self._floor_ms = at_ms

    def feed(self, pcm: bytes) -> list[SpeechStarted | SpeechStopped]:
        data = self._pending + pcm
        whole = len(data) - len(data) % _FRAME_BYTES
        self._pending = data[whole:]
        events: list[SpeechStarted | SpeechStopped] = []
        for offset in range(0, whole, _FRAME_BYTES):
            frame_start_ms = self._bytes_seen // BYTES_PER_MS
            self._bytes_seen += _FRAME_BYTES
            rms = _frame_rms(data[offset : offset + _FRAME_BYTES])
            event = self._step(rms, frame_start_ms=frame_start_ms)
            if event is not None:
                events.append(event)
        return events

    def _step(self, rms: float, *, frame_start_ms: int) -> SpeechStarted | SpeechStopped | None:
        if not self._speaking:
            if rms < self._start_rms:
                self._loud_run = 0
                return None
            if self._loud_run == 0:
                self._loud_run_start_ms = frame_start_ms
            self._loud_run += 1
            if self._loud_run < _FRAMES_TO_START:
                return None
            self._speaking = True
            self._quiet_run_ms = 0
            start = max(self._floor_ms, self._loud_run_start_ms - self.settings.prefix_padding_ms)
            return SpeechStarted(audio_start_ms=start)
        if rms >= self._stop_rms:
            self._quiet_run_ms = 0
            return None
        self._quiet_run_ms += FRAME_MS
        needed = self._turn_silence_ms
        if needed is None:
            needed = self.settings.silence_duration_ms
        if self._quiet_run_ms < needed:
            return None
        self._speaking = False
        self._loud_run = 0
        end_ms = frame_start_ms + FRAME_MS
        self._floor_ms = end_ms
        return SpeechStopped(audio_end_ms=end_ms)


def _frame_rms(frame: bytes) -> float:
    samples = array("h", frame)
    if sys.byteorder == "big":
        samples.byteswap()  # the wire is little-endian
    if not samples:
        return 0.0
    energy = sum(s * s for s in samples)
    return math.sqrt(energy / len(samples)) / _FULL_SCALE
