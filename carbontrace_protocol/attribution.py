"""Energy attributed to the time it was consumed, and the rule for gaps: one definition for the gateway that
builds an aggregate, the cloud that re-derives it and issues statements, and every verifier.

Rules (docs/accounting.md, "Time attribution and gaps", with their sources):

1. Runs (gateway, in the aggregate leaf). Between two consecutive meter readings of a device, (t_i, E_i)
   and (t_j, E_j) by sequence number and measurement time (the signed ``ts``; a re-timed reading's
   re-derived time, carbontrace_protocol/retime.py), the energy E_j - E_i was consumed over [t_i, t_j]. Each
   such interval is one of:
     RUN_MEASURED      the next reading at the device's interval (no sequence number missing, t_j - t_i at
                       most 1.5 interval): energy and timing measured;
     RUN_INTERPOLATED  readings missing in between or a longer interval (an outage, the device off) while
                       the cumulative counter still covers it: energy measured, its timing interpolated;
     RUN_SUBSTITUTED   the counter does not cover it (a reset or wrap, FLAG_METER_RESET or a counter going
                       down): the energy before the reset is lost, so the interval's energy is substituted
                       conservatively: max(E_j, ceil(peak x (t_j - t_i))), ``peak`` the highest rate the
                       aggregate observed (measured intervals and instantaneous power readings).
   Consecutive measured intervals merge into one run while the run stays inside one cell of the
   ATTRIBUTION_GRID_S grid (UTC-aligned quarter hours; every time zone's midnight is on it), so a leaf holds
   a few runs, not one per reading, and a period boundary on the grid falls between runs, never inside one.
   A run is [t_from, t_to, wh, kind]; a reading whose time precedes the one before it (a clock stepped
   back) gives a zero-length run at its own time, interpolated. A reading with no measurement time yet (a
   boot-clock reading not re-timed) is skipped: the next timed reading's interval covers its energy, and
   is not measured (a sequence number is missing from it), so interpolated.
2. Split (statement). A run's energy is spread linearly in time over [t_from, t_to]: the energy of
   [t_from, x] is floor(wh * (x - t_from) / (t_to - t_from)), and a period [start, end) gets
   F(min(end, t_to)) - F(max(start, t_from)). The shares of adjacent periods telescope, so they add up to
   ``wh`` exactly and every verifier computes the same integers. A zero-length run belongs wholly to the
   period holding its instant. The share of a measured run that a period boundary cuts is reported as
   interpolated.
3. Coverage gaps (statement). Per device with runs, the time from its first run's start (or the period's
   start if later) to the period's end (or the statement's issue time if earlier) that no run covers has
   no energy data at all (the device replaced, its meter silent, its data not yet received): substituted
   as ceil(peak x gap seconds) Wh, ``peak`` the highest rate any of the device's aggregates in the
   statement observed, at the highest factor those aggregates use. A later statement, once the data
   arrives, replaces the substitute with measured energy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTION_RULE = "measurement-time/v1"
ATTRIBUTION_GRID_S = 900
RUN_MEASURED = 0
RUN_INTERPOLATED = 1
RUN_SUBSTITUTED = 2
RUN_KINDS = (RUN_MEASURED, RUN_INTERPOLATED, RUN_SUBSTITUTED)
DECI_W_PER_WH_PER_S = 36_000  # a power reading in 0.1 W, as a rate in Wh per second: P / 36,000
SHARE_SCALE = 10_000  # shares as fixed-point strings with four decimals
METHOD_LOCATION = "location-based"
GAS = "CO2"  # grid factors here are CO2 only: no GWP applies, so figures are tCO2, not tCO2e
UNIT = "tCO2"
GRAMS_E4_PER_TONNE = 10**10


@dataclass(frozen=True)
class MeterPoint:
    """One meter reading of a device: sequence number, measurement time, cumulative Wh, reset flag."""

    seq: int
    t: int | None
    wh: int
    reset: bool = False


Run = list[int]  # [t_from, t_to, wh, kind]
Rate = tuple[int, int]  # (Wh, seconds): a rate kept as a fraction, compared by cross-multiplying
# (leaf factor id, leaf window start) -> (factor id, 1e-4 kg/kWh) to count it under: a restatement's newer factor
FactorOf = Callable[[str, int], tuple[str, int]]


def faster(a: Rate | None, b: Rate) -> Rate:
    """The higher of two rates (``a`` None: ``b``)."""
    if a is None or b[0] * a[1] > a[0] * b[1]:
        return b
    return a


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def crosses_grid(t_from: int, t_to: int) -> bool:
    """Whether a multiple of ATTRIBUTION_GRID_S lies strictly inside (t_from, t_to)."""
    return (t_from // ATTRIBUTION_GRID_S + 1) * ATTRIBUTION_GRID_S < t_to


def energy_runs(
    baseline: MeterPoint | None,
    points: Sequence[MeterPoint],
    interval_s: int,
    power_peak: Rate | None = None,
) -> tuple[list[Run], Rate | None]:
    """(runs, peak rate) of a device's meter readings after ``baseline`` (rule 1). ``points`` are in sequence
    order and after the baseline's sequence number; ``power_peak`` the highest instantaneous power read."""
    pairs: list[tuple[int, int, int, int, int]] = []  # t_from, t_to, counter Wh, kind, whether a reset
    peak = power_peak
    previous = baseline
    untimed_reset = False  # a reading with no measurement time yet reset the counter
    for point in points:
        if point.t is None:  # not yet re-timed: its energy falls in the next timed reading's interval
            untimed_reset = untimed_reset or point.reset or (previous is not None and point.wh < previous.wh)
            continue
        if previous is None:
            previous, untimed_reset = point, False
            continue
        reset = untimed_reset or point.reset or point.wh < previous.wh
        untimed_reset = False
        wh = point.wh if reset else point.wh - previous.wh
        if previous.t is None or point.t < previous.t:
            pairs.append((point.t, point.t, wh, RUN_SUBSTITUTED if reset else RUN_INTERPOLATED, int(reset)))
        else:
            span = point.t - previous.t
            regular = point.seq - previous.seq == 1 and span <= interval_s + interval_s // 2
            kind = RUN_SUBSTITUTED if reset else RUN_MEASURED if regular else RUN_INTERPOLATED
            pairs.append((previous.t, point.t, wh, kind, int(reset)))
            if kind == RUN_MEASURED and span > 0:
                peak = faster(peak, (wh, span))
        previous = point
    runs: list[Run] = []
    for t_from, t_to, wh, kind, _ in pairs:
        if kind == RUN_SUBSTITUTED and peak is not None and t_to > t_from:
            wh = max(wh, _ceil_div(peak[0] * (t_to - t_from), peak[1]))
        last = runs[-1] if runs else None
        if (
            last is not None
            and kind == RUN_MEASURED
            and last[3] == RUN_MEASURED
            and last[1] == t_from
            and not crosses_grid(last[0], t_to)
        ):
            last[1], last[2] = t_to, last[2] + wh
        else:
            runs.append([t_from, t_to, wh, kind])
    return runs, peak


def check_runs(value: Any) -> list[Run]:
    """Runs as a leaf states them, shape checked (ValueError)."""
    if not isinstance(value, list):
        raise ValueError("energy runs must be a list")
    for run in value:
        if (
            not isinstance(run, list)
            or len(run) != 4
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in run)
            or run[1] < run[0]
            or run[2] < 0
            or run[3] not in RUN_KINDS
        ):
            raise ValueError(f"energy run {run!r} is not [t_from <= t_to, wh >= 0, kind]")
    return value


def measured_span(energy: Any) -> tuple[int, int] | None:
    """[first run's start, last run's end + 1) of an aggregate's energy (None without runs): the time its
    energy belongs to, which may lie before its reception window (data buffered through an outage)."""
    if not isinstance(energy, dict) or not isinstance(energy.get("runs"), list) or not energy["runs"]:
        return None
    runs = check_runs(energy["runs"])
    return min(r[0] for r in runs), max(r[1] for r in runs) + 1


def split_share(run: Sequence[int], start: int, end: int) -> int:
    """The Wh of ``run`` that period [start, end) gets (rule 2)."""
    t_from, t_to, wh = run[0], run[1], run[2]
    if t_to == t_from:
        return wh if start <= t_from < end else 0
    lo, hi = max(start, t_from), min(end, t_to)
    if hi <= lo:
        return 0

    def cumulative(x: int) -> int:
        return wh * (x - t_from) // (t_to - t_from)

    return cumulative(hi) - cumulative(lo)


def share_text(part: int, total: int) -> str:
    """part / total as a fixed-point string with four decimals ("0.9731"), rounded half to even; "0.0000"
    when the total is zero."""
    if total == 0:
        return "0.0000"
    quotient, remainder = divmod(SHARE_SCALE * part, total)
    if 2 * remainder > total or (2 * remainder == total and quotient % 2 == 1):
        quotient += 1
    whole, fraction = divmod(quotient, SHARE_SCALE)
    return f"{whole}.{fraction:04d}"


def tonnes(grams_e4: int) -> str:
    """Tonnes from 1e-4 g, exact, fixed point with ten decimals (the same text as statement.tonnes)."""
    sign = "-" if grams_e4 < 0 else ""
    whole, fraction = divmod(abs(grams_e4), GRAMS_E4_PER_TONNE)
    return f"{sign}{whole}.{fraction:010d}"


def emissions_figure(grams_e4: int) -> dict[str, Any]:
    """An emissions figure as an auditor reads it, the exact integer underneath."""
    return {"t_co2": tonnes(grams_e4), "unit": UNIT, "gas": GAS, "method": METHOD_LOCATION, "g_e4": grams_e4}


@dataclass
class _Device:
    runs: list[tuple[Run, int]] = field(default_factory=list)  # (run, factor in 1e-4 kg/kWh)
    peak: Rate | None = None
    max_factor: int = -1
    factor_id: str = ""  # the id of max_factor: a gap's substitute is counted under the highest factor


@dataclass
class Attribution:
    """The measurement-time figures of one period, folded from aggregate leaves (rules 2 and 3)."""

    start: int
    end: int
    until: int  # the statement's issue time: no gap is substituted past it
    measured_wh: int = 0
    interpolated_wh: int = 0
    substituted_wh: int = 0
    measured_g_e4: int = 0
    substituted_g_e4: int = 0
    gap_s: int = 0
    by_factor: dict[str, int] = field(default_factory=dict)
    devices: dict[str, _Device] = field(default_factory=dict)
    factor_of: FactorOf | None = None  # None: each leaf's own factor

    def add_aggregate(self, device_id: str, content: dict[str, Any]) -> None:
        """One aggregate leaf's opened fields (JSON view). A leaf without runs (aggregate format 2, before
        attribution) is attributed by its reception window as before: whole, if the window is inside."""
        energy, factor = content.get("energy"), content.get("factor")
        if not isinstance(energy, dict) or not isinstance(factor, dict):
            return
        factor_id, factor_e4 = str(factor["id"]), int(factor["kg_per_kwh"]["m"])
        if self.factor_of is not None:
            factor_id, factor_e4 = self.factor_of(factor_id, int(content["window"][0]))
        if "runs" not in energy:
            window = content["window"]
            if self.start <= window[0] and window[1] <= self.end:
                wh = int(energy["delta_wh"])
                self._count(factor_id, factor_e4, wh, measured=True, interpolated=False)
            return
        device = self.devices.setdefault(device_id, _Device())
        if factor_e4 > device.max_factor:
            device.max_factor, device.factor_id = factor_e4, factor_id
        peak = energy.get("peak")
        if isinstance(peak, list) and len(peak) == 2:
            device.peak = faster(device.peak, (int(peak[0]), int(peak[1])))
        for run in check_runs(energy["runs"]):
            device.runs.append((run, factor_e4))
            wh = split_share(run, self.start, self.end)
            if wh == 0:
                continue
            cut = run[0] < self.start < run[1] or run[0] < self.end < run[1]
            kind = run[3]
            self._count(
                factor_id,
                factor_e4,
                wh,
                measured=kind != RUN_SUBSTITUTED,
                interpolated=kind == RUN_INTERPOLATED or (kind == RUN_MEASURED and cut),
            )

    def _count(self, factor_id: str, factor_e4: int, wh: int, measured: bool, interpolated: bool) -> None:
        grams = wh * factor_e4
        self.by_factor[factor_id] = self.by_factor.get(factor_id, 0) + grams
        if measured:
            self.measured_wh += wh
            self.measured_g_e4 += grams
            if interpolated:
                self.interpolated_wh += wh
        else:
            self.substituted_wh += wh
            self.substituted_g_e4 += grams

    def fill_gaps(self) -> None:
        """Rule 3: substitute each device's uncovered time in the period."""
        for device in self.devices.values():
            if not device.runs:
                continue
            first = min(run[0] for run, _ in device.runs)
            lo, hi = max(self.start, first), min(self.end, self.until)
            gap = _uncovered(lo, hi, ((run[0], run[1]) for run, _ in device.runs))
            if gap <= 0 or device.peak is None:
                continue
            wh = _ceil_div(device.peak[0] * gap, device.peak[1])
            self.gap_s += gap
            grams = wh * device.max_factor
            self.substituted_wh += wh
            self.substituted_g_e4 += grams
            self.by_factor[device.factor_id] = self.by_factor.get(device.factor_id, 0) + grams

    def figures(self) -> dict[str, Any]:
        total_wh = self.measured_wh + self.substituted_wh
        total_g = self.measured_g_e4 + self.substituted_g_e4
        return {
            "rule": ATTRIBUTION_RULE,
            "energy_wh": {
                "total": total_wh,
                "measured": self.measured_wh,
                "interpolated": self.interpolated_wh,
                "substituted": self.substituted_wh,
            },
            "emissions": {
                "total": emissions_figure(total_g),
                "measured": emissions_figure(self.measured_g_e4),
                "substituted": emissions_figure(self.substituted_g_e4),
            },
            "shares": {
                "measured": share_text(self.measured_wh, total_wh),
                "interpolated": share_text(self.interpolated_wh, total_wh),
                "substituted": share_text(self.substituted_wh, total_wh),
            },
            "gap_s": self.gap_s,
        }


def _uncovered(lo: int, hi: int, intervals: Iterable[tuple[int, int]]) -> int:
    """Seconds of [lo, hi) that no interval [a, b] covers."""
    if hi <= lo:
        return 0
    covered, cursor = 0, lo
    for a, b in sorted(intervals):
        a, b = max(a, cursor), min(b, hi)
        if b > a:
            covered += b - a
            cursor = b
    return hi - lo - covered


def attribute(
    items: Iterable[tuple[str, dict[str, Any]]], start: int, end: int, until: int, factor_of: FactorOf | None = None
) -> Attribution:
    """The attribution of [start, end) from (device id, opened aggregate fields) of every aggregate leaf."""
    folded = Attribution(start, end, until, factor_of=factor_of)
    for device_id, content in items:
        folded.add_aggregate(device_id, content)
    folded.fill_gaps()
    return folded


def sum_figures(pages: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Attribution figures of consecutive periods added up (a paged statement's totals): the split rule
    telescopes, so the pages' sum is what one statement over the whole period attributes to runs."""
    total = Attribution(0, 0, 0)
    for page in pages:
        energy, emissions = page["energy_wh"], page["emissions"]
        total.measured_wh += int(energy["measured"])
        total.interpolated_wh += int(energy["interpolated"])
        total.substituted_wh += int(energy["substituted"])
        total.measured_g_e4 += int(emissions["measured"]["g_e4"])
        total.substituted_g_e4 += int(emissions["substituted"]["g_e4"])
        total.gap_s += int(page["gap_s"])
    return total.figures()
