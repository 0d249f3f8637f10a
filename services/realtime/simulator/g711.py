"""G.711 (`audio/pcmu` μ-law, `audio/pcma` A-law) at 8 kHz, table-driven, no dependencies.

The Realtime API accepts G.711 for telephony; the simulator converts it to its internal PCM16 at
24 kHz on the way in (so its VAD, byte clock and token accounting are unchanged) and back on the
way out. Python's `audioop` did this but was removed in 3.13, and the PyPI back-port is one more
native dependency for 60 lines of arithmetic, so the codec is here: each direction is a lookup
table built once from the ITU-T G.711 segment rules (256 entries to decode, 65,536 to encode a
16-bit sample), so coding is one index per sample.

Rates: 8 kHz to 24 kHz by linear interpolation (two points between each pair of samples), 24 kHz
to 8 kHz by averaging each group of three samples (a box low-pass, enough for speech-band audio).
"""

from __future__ import annotations

import sys
from array import array
from functools import lru_cache
from typing import Literal

__all__ = [
    "G711Law",
    "decode_g711",
    "encode_g711",
    "g711_to_pcm24k",
    "pcm24k_to_g711",
]

G711Law = Literal["audio/pcmu", "audio/pcma"]

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # 14-bit
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def _linear_to_ulaw(sample: int) -> int:
    """On the 14-bit magnitude, as G.711's reference code (and `audioop`) does."""
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = next((i for i, end in enumerate(_ULAW_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (mantissa << 4) + 8 if exponent == 0 else (mantissa << 4) + 264 << exponent - 1
    return magnitude if code & 0x80 else -magnitude


def _linear_to_alaw(sample: int) -> int:
    if sample >= 0:
        sign, magnitude = 0x80, sample
    else:
        sign, magnitude = 0x00, -sample - 1
    magnitude = min(magnitude, 32767)
    if magnitude < 256:
        exponent, mantissa = 0, magnitude >> 4
    else:
        exponent = min(7, magnitude.bit_length() - 8)
        mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (sign | (exponent << 4) | mantissa) ^ 0x55


@lru_cache(maxsize=2)
def _decode_table(law: G711Law) -> tuple[int, ...]:
    convert = _ulaw_to_linear if law == "audio/pcmu" else _alaw_to_linear
    return tuple(convert(code) for code in range(256))


@lru_cache(maxsize=2)
def _encode_table(law: G711Law) -> bytes:
    """Indexed by the 16-bit sample as unsigned (two's complement)."""
    convert = _linear_to_ulaw if law == "audio/pcmu" else _linear_to_alaw
    return bytes(convert(value - 65536 if value >= 32768 else value) for value in range(65536))


def decode_g711(data: bytes, law: G711Law) -> array[int]:
    """G.711 bytes to 16-bit samples at the same rate."""
    table = _decode_table(law)
    return array("h", [table[code] for code in data])


def encode_g711(samples: array[int], law: G711Law) -> bytes:
    table = _encode_table(law)
    return bytes([table[sample & 0xFFFF] for sample in samples])


def g711_to_pcm24k(data: bytes, law: G711Law) -> bytes:
    """8 kHz G.711 to PCM16 little-endian at 24 kHz (three samples out per sample in)."""
    samples = decode_g711(data, law)
    out = array("h", bytes(6 * len(samples)))
    for index, current in enumerate(samples):
        following = samples[index + 1] if index + 1 < len(samples) else current
        step = following - current
        out[3 * index] = current
        out[3 * index + 1] = current + step // 3
        out[3 * index + 2] = current + (2 * step) // 3
    return _little_endian(out)


def pcm24k_to_g711(pcm: bytes, law: G711Law) -> bytes:
    """PCM16 little-endian at 24 kHz to 8 kHz G.711 (a partial last group is averaged too)."""
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    reduced = array(
        "h",
        [
            sum(group) // len(group)
            for group in (samples[i : i + 3] for i in range(0, len(samples), 3))
        ],
    )
    return encode_g711(reduced, law)


def _little_endian(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()
