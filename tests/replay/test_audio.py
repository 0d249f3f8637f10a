"""WAV export as a pure function: placement on the wall clock, the cut at barge-in, holes."""

from __future__ import annotations

import io
import wave

from services.replay.analysis import analyse
from services.replay.audio import StoredStream, interleave, plan_audio, render
from tests.replay.events import Log, two_turn_log


def stored(length: int, fill: int, holes: list[tuple[int, int]] = (),  # type: ignore[assignment]
           purged: list[tuple[int, int]] = ()) -> StoredStream:  # type: ignore[assignment]  # fmt: skip
    data = bytearray(bytes([fill]) * length)
    ranges = [(0, length)]
    for s, e in holes:
        data[s:e] = bytes(e - s)
        out = []
        for rs, re_ in ranges:
            if e <= rs or s >= re_:
                out.append((rs, re_))
                continue
            if rs < s:
                out.append((rs, s))
            if e < re_:
                out.append((e, re_))
        ranges = out
    return StoredStream(bytes(data), ranges, list(purged))


def test_interleave() -> None:
    assert interleave(b"\x01\x02\x03\x04", b"\x0a\x0b\x0c\x0d") == bytearray(
        b"\x01\x02\x0a\x0b\x03\x04\x0c\x0d"
    )


def test_two_turns_on_the_wall_clock() -> None:
    log = two_turn_log()
    a = analyse(log.events)
    plan = plan_audio(log.events, a)
    # User frames at their arrival (each received 20 ms after it began).
    assert plan.user[0].dst == 100 * 48 and plan.user[-1].dst == (5000 + 780) * 48
    # The first answer plays from its first frame for all 2 s; the second stops at the cut.
    first = [p for p in plan.assistant if p.dst < 5000 * 48]
    second = [p for p in plan.assistant if p.dst >= 5000 * 48]
    assert first[0].dst == 1400 * 48 and sum(p.length for p in first) == 2000 * 48
    assert second[0].dst == 6000 * 48 and sum(p.length for p in second) == 1000 * 48
    audio = render(plan, stored(2000 * 48, 1), stored(5000 * 48, 2))
    assert audio.duration_ms == 7400 and audio.markers == []
    assert audio.left[99 * 48] == 0 and audio.left[100 * 48] == 1
    assert audio.right[6999 * 48] == 2 and audio.right[7001 * 48] == 0
    assert len(audio.wav()) == audio.wav_size
    with wave.open(io.BytesIO(audio.wav())) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 24_000, 7400 * 24)


def test_a_burst_of_user_frames_is_laid_back_to_back() -> None:
    log = Log().at(0).add("session.started", {})
    for _ in range(50):  # one second of audio arriving at once at 1 s
        log.at(1000).add("client.audio", stream="input", length=960)
    log.at(3000).add("session.ended", {})
    plan = plan_audio(log.events, analyse(log.events))
    assert [p.dst for p in plan.user[:3]] == [980 * 48, 1000 * 48, 1020 * 48]
    assert plan.user[-1].dst == (980 + 49 * 20) * 48


def test_holes_are_silence_and_marked() -> None:
    log = Log().at(0).add("session.started", {})
    log.user_audio(0, 1000)
    log.at(2000).add("session.ended", {})
    plan = plan_audio(log.events, analyse(log.events))
    audio = render(plan, stored(48_000, 7, holes=[(9600, 19200)]), stored(0, 0))
    assert [(m.channel, m.start_ms, m.end_ms, m.reason) for m in audio.markers] == [
        ("user", 200, 400, "missing")
    ]
    assert audio.left[250 * 48] == 0 and audio.left[199 * 48] == 7 and audio.left[400 * 48] == 7
    audio = render(plan, stored(48_000, 7, holes=[(0, 48_000)], purged=[(0, 48_000)]), stored(0, 0))
    assert [(m.start_ms, m.end_ms, m.reason) for m in audio.markers] == [(0, 1000, "purged")]
    assert b"cue " in audio.wav() and b"purged" in audio.wav()
    assert len(audio.wav()) == audio.wav_size
    with wave.open(io.BytesIO(audio.wav())) as w:  # the cue trailer keeps the file readable
        assert w.getnframes() == 2000 * 24
