"""Issue 13, item 5: the batch header's window is checked by the protocol core's header parser.

One case per bad window, as data: each signed header differs from a valid one only in its window, so the
rejection is the window's. Windows are half-open [start, end): start < end (an empty window holds nothing
and ``aggregate_window`` refuses it), both integers in 0..2^63-1.
"""

from __future__ import annotations

from typing import Any

import pytest

from carbontrace_protocol import cbor, cose, p256
from carbontrace_protocol.batch import ZERO_HASH, MalformedBatch, build_batch, parse_header

MAX_TIME = 2**63 - 1  # the protocol's bound (carbontrace_protocol.batch.MAX_TIME), restated as the spec
KEY = p256.private_key_from_bytes(bytes(range(1, 33)))
GOOD = build_batch(KEY, "gw-1", "site-1", 0, (1_700_000_000, 1_700_000_900), [], [], ZERO_HASH, 1_700_000_901)

BAD_WINDOWS: list[tuple[str, Any]] = [
    ("strings", ["x", "y"]),
    ("reversed", [5, 1]),
    ("empty", [5, 5]),
    ("three_elements", [1, 2, 3]),
    ("one_element", [1]),
    ("no_elements", []),
    ("negative_start", [-1, 5]),
    ("end_past_2_63", [0, 2**63]),
    ("near_2_64", [2**64 - 2, 2**64 - 1]),
    ("booleans", [False, True]),
    ("float_like_tag", [1, cbor.Tag(4, [-1, 25])]),
    ("nested", [[1], [2]]),
]
GOOD_WINDOWS: list[tuple[str, Any]] = [
    ("zero_start", [0, 1]),
    ("max_end", [MAX_TIME - 1, MAX_TIME]),
    ("fifteen_minutes", [1_700_000_000, 1_700_000_900]),
]


def _signed_with_window(window: Any) -> bytes:
    header = dict(GOOD.header, window=window)
    return bytes(cose.sign1(KEY, b"gw-1", cbor.encode(header)))


@pytest.mark.parametrize("window", [w for _, w in BAD_WINDOWS], ids=[n for n, _ in BAD_WINDOWS])
def test_bad_window_is_a_malformed_batch(window: Any) -> None:
    with pytest.raises(MalformedBatch, match="window") as err:
        parse_header(_signed_with_window(window))
    assert err.value.reason == "malformed_batch"


@pytest.mark.parametrize("window", [w for _, w in GOOD_WINDOWS], ids=[n for n, _ in GOOD_WINDOWS])
def test_good_window_parses(window: Any) -> None:
    _, header = parse_header(_signed_with_window(window))
    assert header["window"] == window
