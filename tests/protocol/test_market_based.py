"""Market-based Scope 2 (carbontrace_protocol/instruments.py, market_based.py) with the real factor catalogue:
the instrument record parses strictly, a volume is shared over periods exactly once, instruments cover at most
the measured energy, the rest is at the residual mix the rule selects, and without a residual mix the
location-based factor is used and named as the fallback."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from importlib import resources
from typing import Any

import pytest

from carbontrace_protocol import strict_json
from carbontrace_protocol.emission_factors import KIND_LOCATION, load_catalogue, parse_catalogue
from carbontrace_protocol.factor_rule import SiteLocation
from carbontrace_protocol.instruments import InstrumentError, parse_instrument, period_share
from carbontrace_protocol.market_based import (
    FALLBACK_NO_RESIDUAL,
    MarketBasedError,
    SiteEnergy,
    counted_once,
    site_entry,
)

JAN_2026 = 1767225600  # 2026-01-01T00:00:00Z
FEB_2026 = 1769904000
MAR_2026 = 1772323200
ISSUED_ON = datetime.date(2026, 3, 2)
HEBEI = SiteLocation("CN", "CN-HE", "CN-GRID-NORTH")


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "gec",
        "instrument_id": "GEC-2026-000123",
        "issuer": "China Green Certificate Issuance and Trading Platform",
        "site_id": "site-hebei",
        "volume_wh": 1_000_000,
        "delivery": {"start": JAN_2026, "end": MAR_2026},
        "rate_kg_per_kwh_e4": 0,
        "evidence_sha256": "ab" * 32,
    }
    base.update(changes)
    return base


def test_a_record_parses_and_its_hash_is_its_canonical_json() -> None:
    instrument = parse_instrument(record())
    assert instrument.volume_wh == 1_000_000 and instrument.delivery_end == MAR_2026
    assert instrument.to_json() == record()
    assert instrument.sha256() == hashlib.sha256(strict_json.canonical(record())).hexdigest()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"kind": "green"}, "instrument.kind"),
        ({"volume_wh": 0}, "instrument.volume_wh"),
        ({"volume_wh": -5}, "instrument.volume_wh"),
        ({"volume_wh": 1.5}, "instrument.volume_wh"),
        ({"volume_wh": True}, "instrument.volume_wh"),
        ({"delivery": {"start": MAR_2026, "end": JAN_2026}}, "instrument.delivery must end after"),
        ({"delivery": {"start": JAN_2026, "end": JAN_2026}}, "instrument.delivery must end after"),
        ({"delivery": {"start": JAN_2026}}, "missing fields ['end']"),
        ({"rate_kg_per_kwh_e4": 10}, "of a gec must be 0"),
        ({"kind": "ppa", "rate_kg_per_kwh_e4": -1}, "rate_kg_per_kwh_e4"),
        ({"evidence_sha256": "AB" * 32}, "evidence_sha256"),
        ({"instrument_id": ""}, "instrument.instrument_id"),
        ({"issuer": " padded"}, "instrument.issuer"),
        ({"issuer": "line\nbreak"}, "instrument.issuer"),
        # looks like "China GEC Platform": the same certificate could be registered twice
        ({"issuer": "China\u200bGEC Platform"}, "instrument.issuer"),  # zero-width space
        ({"issuer": "China\u00a0GEC Platform"}, "instrument.issuer"),  # no-break space
        ({"issuer": "China  GEC Platform"}, "instrument.issuer"),  # two spaces
        ({"issuer": "China GEC Platform\u2028"}, "instrument.issuer"),  # line separator
        ({"issuer": "\u202eChina GEC Platform"}, "instrument.issuer"),  # right-to-left override
        ({"issuer": "Caf\u0065\u0301 Power"}, "instrument.issuer"),  # decomposed é (not NFC)
        ({"issuer": "Plant\u0085"}, "instrument.issuer"),  # a C1 control
        ({"issuer": "\ufeffBOM Power"}, "instrument.issuer"),
        ({"issuer": ""}, "instrument.issuer"),
        ({"issuer": ["China GEC Platform"]}, "instrument.issuer"),
        ({"site_id": 7}, "instrument.site_id"),
        ({"extra": 1}, "unknown fields ['extra']"),
    ],
)
def test_a_bad_record_is_a_typed_error_naming_its_field(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(InstrumentError, match=named.replace("[", r"\[").replace("]", r"\]")) as err:
        parse_instrument(record(**changes))
    assert err.value.reason == "bad_instrument"


def test_a_missing_field_is_named() -> None:
    raw = record()
    del raw["rate_kg_per_kwh_e4"]
    with pytest.raises(InstrumentError, match="rate_kg_per_kwh_e4"):
        parse_instrument(raw)


def test_a_volume_is_shared_over_any_cut_of_time_exactly_once() -> None:
    odd = parse_instrument(record(volume_wh=1_000_003, delivery={"start": JAN_2026, "end": MAR_2026 + 7}))
    january = period_share(odd, JAN_2026, FEB_2026)
    february = period_share(odd, FEB_2026, MAR_2026)
    tail = period_share(odd, MAR_2026, MAR_2026 + 86400)
    assert january + february + tail == 1_000_003
    # pro rata to the overlap: January is 31 of the 59 days (and 7 s), floored
    assert january == 1_000_003 * (FEB_2026 - JAN_2026) // (MAR_2026 + 7 - JAN_2026)
    days = [period_share(odd, t, t + 86400) for t in range(JAN_2026, MAR_2026 + 86400, 86400)]
    assert sum(days) == 1_000_003
    assert period_share(odd, MAR_2026 + 7, MAR_2026 + 100) == 0
    assert period_share(odd, JAN_2026 - 100, JAN_2026) == 0


def test_instruments_cover_measured_energy_at_their_rate_and_the_rest_is_at_the_residual_mix() -> None:
    catalogue = load_catalogue()
    gec = parse_instrument(record())  # 1,000,000 Wh over Jan-Feb: January's share is 31/59
    ppa = parse_instrument(record(kind="ppa", instrument_id="PPA-7", issuer="Hebei Wind Co", volume_wh=50_000,
                                  delivery={"start": JAN_2026, "end": FEB_2026}, rate_kg_per_kwh_e4=120,
                                  evidence_sha256=None))
    energy = SiteEnergy(total_wh=2_000_000, measured_wh=1_900_000, factor_ids=frozenset({"CN-HE-2022"}), first_time=JAN_2026)
    entry = site_entry("site-hebei", energy, HEBEI, [ppa, gec], JAN_2026, FEB_2026, catalogue, ISSUED_ON)
    gec_share = 1_000_000 * (FEB_2026 - JAN_2026) // (MAR_2026 - JAN_2026)
    assert [u["record"]["instrument_id"] for u in entry["instruments"]] == ["GEC-2026-000123", "PPA-7"]
    assert [u["used_wh"] for u in entry["instruments"]] == [gec_share, 50_000]
    # the residual mix: Hebei has none, North grid none, so China's national 2023 "excluding market-traded
    # non-fossil power" factor, 0.6096 (MEE/NBS), valid from 2026-01-15
    factor = entry["residual_factor"]
    assert (factor["id"], factor["kg_per_kwh_e4"], factor["region"], factor["fallback"]) == (
        "CN-national-2023-excl-market-nonfossil", 6096, "CN", None)
    residual = 2_000_000 - gec_share - 50_000
    assert entry["energy_wh"] == {"total": 2_000_000, "measured": 1_900_000, "instruments": gec_share + 50_000,
                                  "residual": residual}
    grams = 50_000 * 120 + residual * 6096
    whole, fraction = divmod(grams, 10**10)
    assert entry["emissions"] == {"t_co2": f"{whole}.{fraction:010d}", "unit": "tCO2", "gas": "CO2",
                                  "method": "market-based", "g_e4": grams}


def test_instruments_never_cover_more_than_the_measured_energy() -> None:
    catalogue = load_catalogue()
    big = parse_instrument(record(volume_wh=10**12))
    energy = SiteEnergy(total_wh=5_000, measured_wh=3_000, factor_ids=frozenset(), first_time=JAN_2026)
    entry = site_entry("site-hebei", energy, HEBEI, [big], JAN_2026, FEB_2026, catalogue, ISSUED_ON)
    assert entry["instruments"][0]["used_wh"] == 3_000
    assert entry["energy_wh"]["residual"] == 2_000  # substituted energy stays at the residual mix
    assert entry["emissions"]["g_e4"] == 2_000 * 6096


def test_before_a_residual_mix_is_valid_the_older_year_is_selected() -> None:
    energy = SiteEnergy(total_wh=1_000, measured_wh=1_000, factor_ids=frozenset(), first_time=JAN_2026)
    entry = site_entry("site-hebei", energy, HEBEI, [], JAN_2026, FEB_2026, load_catalogue(),
                       datetime.date(2026, 1, 10))  # 2023's residual mix is valid from 2026-01-15
    assert entry["residual_factor"]["id"] == "CN-national-2022-excl-market-nonfossil"
    assert entry["emissions"]["g_e4"] == 1_000 * 5856


def test_without_a_residual_mix_the_location_based_factor_is_used_and_named() -> None:
    text = resources.files("carbontrace_protocol").joinpath("data/emission_factors.json").read_text()
    doc = json.loads(text)
    doc["factors"] = [f for f in doc["factors"] if f["kind"] != "residual_mix"]
    catalogue = parse_catalogue(json.dumps(doc))
    energy = SiteEnergy(total_wh=1_000, measured_wh=1_000, factor_ids=frozenset(), first_time=JAN_2026)
    entry = site_entry("site-hebei", energy, HEBEI, [], JAN_2026, FEB_2026, catalogue, ISSUED_ON)
    factor = entry["residual_factor"]
    assert factor["fallback"] == FALLBACK_NO_RESIDUAL
    assert factor["kind"] == KIND_LOCATION
    assert factor["id"] == "CN-HE-2022"  # the location-based rule: Hebei's provincial factor, 0.7252
    assert entry["emissions"]["g_e4"] == 1_000 * 7252


def test_an_instrument_listed_twice_for_overlapping_delivery_is_double_counting() -> None:
    once = parse_instrument(record())
    again = dataclasses.replace(once, volume_wh=5, delivery_start=FEB_2026)
    with pytest.raises(MarketBasedError, match="double counting"):
        counted_once([once, again])
    later = dataclasses.replace(once, delivery_start=MAR_2026, delivery_end=MAR_2026 + 86400)
    assert counted_once([once, later]) == [once, later]  # the same number, a later vintage: not overlapping


@pytest.mark.parametrize("issuer", ["Café Power", "中国绿色电力证书交易平台", "Hebei Wind Co.", "Ørsted A/S", "I-REC (Foundation)"])
def test_an_issuer_written_one_way_parses(issuer: str) -> None:
    assert parse_instrument(record(issuer=issuer)).issuer == issuer
