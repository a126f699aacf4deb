"""The attribution rules (carbontrace_protocol/attribution.py, docs/accounting.md) on aggregates a gateway
builds and signs and the batch verifier re-derives: energy goes to the month it was consumed, an interval
across a period boundary splits by the telescoping linear rule, and uncovered time is substituted at the
peak observed rate and reported as such."""

from __future__ import annotations

import datetime

from carbontrace_protocol import p256
from carbontrace_protocol.attribution import RUN_INTERPOLATED, attribute, split_share
from carbontrace_protocol.batch import aggregate_window, build_batch
from carbontrace_protocol.batch_verify import verify_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.views import aggregate_json

DEVICE = "dev-month"
DEVICE_KEY = p256.private_key_from_bytes(b"\x44" * 32)
GATEWAY_KEY = p256.private_key_from_bytes(b"\x55" * 32)
JAN_END = int(datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC).timestamp())
INTERVAL = 60


def _verified_aggregate(readings: list[Reading], window: tuple[int, int]) -> dict[str, object]:
    """The aggregate a gateway builds over ``readings``, as the batch verifier accepts it (JSON view)."""
    factor = get_factor()
    signed = [sign_reading(r, DEVICE_KEY) for r in readings]
    aggregate = aggregate_window(DEVICE, window[0], window[1], INTERVAL, readings, factor, None)
    batch = build_batch(GATEWAY_KEY, "gw-m", "site-m", 0, window, signed, [aggregate], b"\x00" * 32, window[1] + 1)
    verified = verify_batch(batch.encode(), bytes(p256.public_key(GATEWAY_KEY)),
                            lambda d: bytes(p256.public_key(DEVICE_KEY)), lambda f: get_factor(f), lambda d: None)
    [(_, leaf)] = verified.aggregates
    return aggregate_json(leaf)


def _reading(seq: int, t: int, wh: int) -> Reading:
    return Reading(DEVICE, seq, t, "1.0.0", co2_ppm=600, energy_wh=wh, power_deci_w=3600)


def test_an_outage_across_the_month_end_attributes_energy_to_the_month_it_was_consumed() -> None:
    # readings every minute, then an outage from 30 min before to 90 min after midnight: 4 h of readings
    # missing, the counter still covers them; the batch arrives (window) wholly in February
    before = [_reading(s, JAN_END - 1800 - (3 - s) * INTERVAL, 1000 + 10 * s) for s in range(4)]
    after = [_reading(10 + s, JAN_END + 5400 + s * INTERVAL, 1200 + 10 * s) for s in range(3)]
    window = (JAN_END + 5400, JAN_END + 5400 + 3600)
    aggregate = _verified_aggregate(before + after, window)
    runs = aggregate["energy"]["runs"]  # type: ignore[index]
    outage = [run for run in runs if run[3] == RUN_INTERPOLATED]
    assert outage == [[JAN_END - 1800, JAN_END + 5400, 1200 - 1030, RUN_INTERPOLATED]]
    january = attribute([(DEVICE, aggregate)], JAN_END - 86400 * 31, JAN_END, JAN_END + 86400)
    february = attribute([(DEVICE, aggregate)], JAN_END, JAN_END + 86400 * 28, JAN_END + 86400)
    # the split rule: floor(170 * 1800 / 7200) = 42 Wh before midnight, the rest after; nothing is lost
    assert january.measured_wh == 30 + 42 and february.measured_wh == 170 - 42 + 20
    assert january.measured_wh + february.measured_wh == 1220 - 1000
    assert january.interpolated_wh == 42  # the outage's timing is interpolated, and reported as such
    assert january.figures()["shares"]["interpolated"] == "0.5833"  # 42 / 72


def test_a_split_telescopes_for_any_boundary() -> None:
    run = [1000, 1007, 10, 0]
    for boundary in range(995, 1012):
        assert split_share(run, 0, boundary) + split_share(run, boundary, 2000) == 10
    assert split_share([1000, 1000, 5, 1], 1000, 1001) == 5 and split_share([1000, 1000, 5, 1], 0, 1000) == 0


def test_a_gap_is_substituted_at_the_peak_rate_and_reported() -> None:
    # readings for ten minutes, one interval at 30 Wh/min (the peak), then the device falls silent
    start = JAN_END
    whs = [1000, 1010, 1020, 1050, 1060, 1070, 1080, 1090, 1100, 1110, 1120]
    readings = [_reading(s, start + s * INTERVAL, wh) for s, wh in enumerate(whs)]
    aggregate = _verified_aggregate(readings, (start, start + 660))
    period_end = start + 3600
    attributed = attribute([(DEVICE, aggregate)], start, period_end, period_end + 1)
    gap = period_end - (start + 600)
    assert attributed.gap_s == gap
    assert attributed.substituted_wh == -(-30 * gap // INTERVAL)  # ceil(peak x gap): conservative
    assert attributed.measured_wh == 120
    figures = attributed.figures()
    total = 120 + attributed.substituted_wh
    assert figures["energy_wh"] == {"total": total, "measured": 120, "interpolated": 0,
                                    "substituted": attributed.substituted_wh}
    assert figures["emissions"]["substituted"]["unit"] == "tCO2"
    assert figures["emissions"]["substituted"]["method"] == "location-based"
    # a statement issued before the period ends substitutes nothing after its issue time
    early = attribute([(DEVICE, aggregate)], start, period_end, start + 600)
    assert early.substituted_wh == 0 and early.gap_s == 0
