"""Frame ids carried inside the audio itself, so both ends can timestamp a frame without any
change to the protocol: the first 16 samples of a 20 ms frame each hold 4 bits of a 64-bit id
(values 0..15, far below anything the simulator's VAD hears)."""

from __future__ import annotations

import base64

ID_SAMPLES = 16
APPEND_PREFIX = '{"type":"input_audio_buffer.append"'
DELTA_PREFIX = '{"type":"response.output_audio.delta"'


def frame_id(session: int, seq: int) -> int:
    return (session << 32) | seq


def split_id(fid: int) -> tuple[int, int]:
    return fid >> 32, fid & 0xFFFFFFFF


def stamp(frame: bytes, fid: int) -> bytes:
    """`frame` with its first 16 samples replaced by the nibbles of `fid`."""
    head = bytearray(2 * ID_SAMPLES)
    for i in range(ID_SAMPLES):
        head[2 * i] = (fid >> (4 * i)) & 0xF
    return bytes(head) + frame[2 * ID_SAMPLES :]


def read_id(pcm_head: bytes) -> int:
    fid = 0
    for i in range(ID_SAMPLES):
        fid |= (pcm_head[2 * i] & 0xF) << (4 * i)
    return fid


def id_from_append(text: str) -> int | None:
    """The frame id in an `input_audio_buffer.append` event's JSON, decoding only its first
    bytes of base64."""
    at = text.find('"audio":"')
    if at < 0:
        return None
    start = at + 9
    try:
        head = base64.b64decode(text[start : start + 44])
    except ValueError:
        return None
    return read_id(head) if len(head) >= 2 * ID_SAMPLES else None
