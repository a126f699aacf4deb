"""Server code decodes a device's canonical signed reading on the fast path everywhere, not only in
``verify_reading``: the gateway's window batcher, the cloud's batch re-verification and the leaf views.

Under load the pure path there was a fifth of the gateway's CPU (its batcher decoded every spooled reading
again with the devices' decoder) and the cloud parsed each leaf twice (docs/benchmarks.md, "Capacity"). Each
test makes the pure COSE parser fail for the test's own readings, so a caller that still takes it fails here;
a non-canonical reading still goes to the pure path and keeps its reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from carbontrace_protocol import cose, p256, views
from carbontrace_protocol.batch import ZERO_HASH, aggregate_window, build_batch, parse_leaf
from carbontrace_protocol.batch_verify import verify_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.errors import NonCanonical
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.verify import unverified_reading
from edge_gateway.spool import decode_signed_reading

GW = p256.private_key_from_bytes(bytes(range(1, 33)))
DEV = p256.private_key_from_bytes(bytes(range(2, 34)))
WINDOW = (1_764_126_000, 1_764_126_900)
READINGS = [Reading("meter-1", s, WINDOW[0] + 60 * s, "0.5.0", co2_ppm=410 + s, energy_wh=1000 + 7 * s)
            for s in range(1, 6)]
SIGNED = [sign_reading(r, DEV) for r in READINGS]


@pytest.fixture
def pure_parse_refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``cose.parse_sign1`` (the devices' parser, the fast path's fallback) refuses this test's readings."""
    pure = cose.parse_sign1
    ours = set(SIGNED)

    def refuse(data: bytes) -> cose.Sign1:
        if bytes(data) in ours:
            raise AssertionError("a canonical signed reading went through the pure COSE parser")
        return pure(data)

    monkeypatch.setattr(cose, "parse_sign1", refuse)
    yield


def test_the_gateway_batcher_decodes_spooled_readings_on_the_fast_path(pure_parse_refused: None) -> None:
    assert [decode_signed_reading(s) for s in SIGNED] == READINGS


def test_leaf_views_decode_readings_on_the_fast_path(pure_parse_refused: None) -> None:
    batch = _batch()
    for leaf, reading in zip(batch.leaves, READINGS, strict=False):
        kind, content = views.leaf_content(leaf)
        assert kind == views.KIND_READING and content == views.reading_content(reading)
        assert "co2_ppm" in views.fields_in_clear(leaf)


def test_batch_reverification_parses_each_reading_leaf_once_on_the_fast_path(pure_parse_refused: None) -> None:
    verified = verify_batch(_batch().encode(), p256.public_key(GW), {"meter-1": p256.public_key(DEV)}.get,
                            lambda i: get_factor(i), lambda _d: None)
    assert [r.reading for r in verified.readings] == READINGS


def test_a_non_canonical_reading_still_gets_the_pure_paths_reason() -> None:
    signed = cose.sign1(DEV, b"meter-1", _long_head(cose.parse_sign1(SIGNED[0]).payload))
    with pytest.raises(NonCanonical):
        unverified_reading(signed)


def _long_head(payload: bytes) -> bytes:
    """The same SenML pack with its array head written in two bytes instead of one (not canonical)."""
    assert 0x80 <= payload[0] < 0x98
    return bytes([0x98, payload[0] - 0x80]) + payload[1:]


def _batch():  # type: ignore[no-untyped-def]
    aggregates = [aggregate_window("meter-1", WINDOW[0], WINDOW[1], 60, READINGS, get_factor())]
    built = build_batch(GW, "gw-1", "site-1", 0, WINDOW, SIGNED, aggregates, ZERO_HASH, WINDOW[1] + 1)
    assert [parse_leaf(leaf)[1] for leaf in built.leaves[:len(SIGNED)]] == SIGNED
    return built
