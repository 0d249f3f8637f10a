"""validation.timestamp_datetime agrees with protobuf's own conversion, edge to edge."""

from __future__ import annotations

import random
from datetime import UTC

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.gateway.validation import InvalidField, timestamp_datetime

MIN_S, MAX_S = -62_135_596_800, 253_402_300_799  # 0001-01-01 and 9999-12-31T23:59:59


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (MIN_S, 0),
        (MAX_S, 999_999_999),
        (-1, 1),
        (-1, 999),
        (1_733_300_000, 123_456_789),
        (1_733_300_000, 999),  # below a microsecond: truncated, as protobuf does
        *[(random.Random(i).randint(MIN_S, MAX_S), random.Random(-i).randint(0, 999_999_999))
          for i in range(200)],
    ],
)  # fmt: skip
def test_matches_protobuf(seconds: int, nanos: int) -> None:
    value = Timestamp(seconds=seconds, nanos=nanos)
    got = timestamp_datetime("sent_at", value)
    assert got == value.ToDatetime(UTC)
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(MIN_S - 1, 0), (MAX_S + 1, 0), (0, -1), (0, 1_000_000_000)]
)
def test_out_of_range_is_refused(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidField, match="sent_at"):
        timestamp_datetime("sent_at", Timestamp(seconds=seconds, nanos=nanos))
