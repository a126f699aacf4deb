"""A chamber's fluxes summed over a period into CO2 removed or emitted, with its propagated uncertainty.

The one definition of the rule in docs/accounting.md ("Carbon sinks: from fluxes to tonnes"), for the cloud and
any verifier. Pure integer arithmetic over verified ``Flux`` records (carbontrace_protocol/flux.py):

* only records with QA ``ok`` count; the others are counted by flag and their time is not covered;
* each counted session stands for the time nearest to it: from the midpoint between it and the previous counted
  session to the midpoint between it and the next, never more than ``max_gap_s / 2`` either side of its own
  midpoint, clipped to the period; time no session stands for is reported as uncovered, never filled;
* per m²: Σ flux_i × Δt_i (nmol m⁻², as the flux mantissa is nmol m⁻² s⁻¹); its standard uncertainty
  sqrt(Σ (flux_se_i × Δt_i)²): the sessions' regression errors are taken as independent (GUM, JCGM 100:2008
  §5.1.2, eq. 10, sensitivity Δt_i), one session's error as the same over its whole interval;
* mass: per m² × the area the chamber stands for × M(CO2) = 44.009 g mol⁻¹; negative is a removal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from carbontrace_protocol.flux import QA_OK, Flux, round_div, rounded_sqrt_of_ratio

# M(CO2) from the IUPAC conventional atomic weights C 12.011 and O 15.999, in mg/mol
CO2_MOLAR_MASS_MG = 44009
DEFAULT_MAX_GAP_S = 7200  # a session stands for at most an hour either side of it


def session_time(record: Flux) -> int:
    """The instant a session's flux stands for: the middle of its closure (floor)."""
    return (record.session[0] + record.session[1]) // 2


def _tonnes(micrograms: int) -> str:
    """µg as a decimal tonne figure, exact (1 t = 1e12 µg), e.g. -0.000000475297."""
    sign = "-" if micrograms < 0 else ""
    whole, rest = divmod(abs(micrograms), 10**12)
    return f"{sign}{whole}.{rest:012d}"


def integrate(
    records: Iterable[Flux],
    start: int,
    end: int,
    area_cm2: int | None = None,
    max_gap_s: int = DEFAULT_MAX_GAP_S,
) -> dict[str, Any]:
    """The CO2 one chamber's sessions account for over [start, end). ``area_cm2``: the surface the chamber
    stands for (a field its collar samples; by default the chamber's own footprint, which must then be the same
    in every record). Raises ValueError for records of several devices or two different records of one session."""
    if end <= start or max_gap_s <= 0:
        raise ValueError("empty period or gap")
    by_session: dict[tuple[int, int], Flux] = {}
    devices = set()
    for record in records:
        devices.add(record.device_id)
        key = (record.seq[0], record.seq[1])
        if key in by_session and by_session[key] != record:
            raise ValueError(f"two different flux records for the samples {key[0]}-{key[1]}")
        by_session[key] = record
    if len(devices) > 1:
        raise ValueError(f"the sessions of one chamber are summed, not of several: {sorted(devices)}")
    if area_cm2 is None:
        areas = {r.area_cm2 for r in by_session.values()}
        if len(areas) > 1:
            raise ValueError("records of several chamber areas: give the area they stand for")
        area_cm2 = areas.pop() if areas else 1
    half = max_gap_s // 2
    excluded: Counter[str] = Counter()
    counted = []
    for record in sorted(by_session.values(), key=lambda r: (session_time(r), r.seq[0])):
        t = session_time(record)
        if t + half <= start or t - half >= end:
            continue  # stands for no time in the period
        if record.qa != QA_OK:
            excluded[record.qa] += 1
        else:
            counted.append(record)
    per_m2 = 0
    variance = 0
    covered = 0
    for i, record in enumerate(counted):
        t = session_time(record)
        lo = max(start, t - half)
        hi = min(end, t + half)
        if i > 0:
            lo = max(lo, (session_time(counted[i - 1]) + t) // 2)
        if i + 1 < len(counted):
            hi = min(hi, (t + session_time(counted[i + 1])) // 2)
        span = max(0, hi - lo)
        covered += span
        per_m2 += record.flux_e3 * span
        variance += (record.flux_se_e3 * span) ** 2
    sigma_per_m2 = rounded_sqrt_of_ratio(variance, 1)
    # g = nmol m⁻² × 1e-9 mol/nmol × area_cm2 × 1e-4 m² × 44009e-3 g/mol, so µg = nmol m⁻² × cm² × 44009 / 1e10
    micrograms = round_div(per_m2 * area_cm2 * CO2_MOLAR_MASS_MG, 10**10)
    sigma_micrograms = rounded_sqrt_of_ratio(variance * (area_cm2 * CO2_MOLAR_MASS_MG) ** 2, 10**20)
    return {
        "device": devices.pop() if devices else None,
        "period": [start, end],
        "sessions_counted": len(counted),
        "sessions_excluded": dict(sorted(excluded.items())),
        "covered_s": covered,
        "uncovered_s": (end - start) - covered,
        "per_m2_nmol": per_m2,
        "per_m2_sigma_nmol": sigma_per_m2,
        "area_cm2": area_cm2,
        "co2_ug": micrograms,
        "co2_sigma_ug": sigma_micrograms,
        "tco2": _tonnes(micrograms),
        "tco2_sigma": _tonnes(sigma_micrograms),
        "direction": "removal" if micrograms < 0 else "emission" if micrograms > 0 else "none",
    }
