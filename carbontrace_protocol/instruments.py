"""Contractual instruments for market-based Scope 2: one definition of the record, for the cloud that registers
it and puts it in statements, and every verifier that re-derives a market-based figure from it.

A record is the JSON object

    {"kind": "gec", "instrument_id": "...", "issuer": "...", "site_id": "...", "volume_wh": 1000000,
     "delivery": {"start": 1767225600, "end": 1769904000}, "rate_kg_per_kwh_e4": 0,
     "evidence_sha256": "<64 lowercase hex>" | null}

- ``kind``: ``gec`` (China's Green Electricity Certificate 绿证), ``rec`` (a renewable energy certificate of
  another registry), ``go`` (an EU Guarantee of Origin), ``i_rec`` (an I-REC), ``ppa`` (a power purchase
  agreement, a contract for the power of a named generator);
- ``instrument_id``: the certificate's number or the contract's reference at its ``issuer`` (the registry or
  the counterparty); the pair names one instrument, so the issuer is written one way only (NFC, single ASCII
  spaces, no invisible or control character: ``_issuer``);
- ``site_id``: the site whose consumption the instrument is claimed for;
- ``volume_wh``: the energy the instrument conveys, in integer Wh (> 0);
- ``delivery``: the generation period it covers, [start, end) in unix seconds, start < end;
- ``rate_kg_per_kwh_e4``: the emission rate of the contracted power, in the factor catalogue's unit (1e-4
  kgCO2/kWh); 0 for renewable power, and always 0 for a GEC, which is issued only for renewable generation;
- ``evidence_sha256``: sha256 of the certificate or contract document, or null if none was given.

Parsed strictly (``parse_instrument``): an unknown, missing or ill-typed field is an ``InstrumentError`` whose
message names it. A statement carries each record with ``record_sha256`` (sha256 of its canonical JSON).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from carbontrace_protocol import strict_json
from carbontrace_protocol.errors import ProtocolError

KIND_GEC = "gec"
KIND_REC = "rec"
KIND_GO = "go"
KIND_I_REC = "i_rec"
KIND_PPA = "ppa"
KINDS = frozenset({KIND_GEC, KIND_REC, KIND_GO, KIND_I_REC, KIND_PPA})
ZERO_RATE_KINDS = frozenset({KIND_GEC})  # issued only for renewable generation
FIELDS = ("kind", "instrument_id", "issuer", "site_id", "volume_wh", "delivery", "rate_kg_per_kwh_e4",
          "evidence_sha256")
DELIVERY_FIELDS = ("start", "end")
MAX_TIME = 2**40  # a unix time in seconds far past any delivery period (year 36812)
MAX_VOLUME_WH = 10**15  # a terawatt-hour is 10^12 Wh; a thousand of them bounds any one instrument
MAX_RATE_E4 = 100_000  # 10 kgCO2/kWh: above any generator's rate
_INSTRUMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_SITE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the cloud's site ids (cloud/schemas.py)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class InstrumentError(ProtocolError):
    reason = "bad_instrument"


@dataclass(frozen=True)
class Instrument:
    kind: str
    instrument_id: str
    issuer: str
    site_id: str
    volume_wh: int
    delivery_start: int
    delivery_end: int
    rate_e4: int  # kgCO2/kWh in units of 1e-4, as the factor catalogue
    evidence_sha256: str | None

    @property
    def key(self) -> tuple[str, str]:
        """The instrument's identity: the same certificate number at the same issuer is the same instrument."""
        return (self.issuer, self.instrument_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "instrument_id": self.instrument_id,
            "issuer": self.issuer,
            "site_id": self.site_id,
            "volume_wh": self.volume_wh,
            "delivery": {"start": self.delivery_start, "end": self.delivery_end},
            "rate_kg_per_kwh_e4": self.rate_e4,
            "evidence_sha256": self.evidence_sha256,
        }

    def canonical(self) -> bytes:
        return strict_json.canonical(self.to_json())

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def overlaps(self, other: Instrument) -> bool:
        return self.delivery_start < other.delivery_end and other.delivery_start < self.delivery_end


def _exact(value: Any, what: str, names: tuple[str, ...]) -> dict[str, Any]:
    return strict_json.exact_object(value, what, names, InstrumentError)


def _int(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InstrumentError(f"{what} must be a JSON integer from {low} to {high}")
    return value


def _matching(value: Any, what: str, pattern: re.Pattern[str], shape: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InstrumentError(f"{what} must be {shape}")
    return value


# Characters that print as nothing or as a line break: two issuers differing only by them look the same, and
# the same certificate would be registered twice (the identity is (issuer, instrument_id), compared exactly).
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _issuer(value: Any) -> str:
    """The issuer's name, written one way only: NFC, no invisible or control character, words separated by one
    ASCII space, none around it. So a name that looks the same is the same string, and the same certificate
    cannot be registered twice under a zero-width space, a no-break space or a decomposed accent."""
    if (
        not isinstance(value, str) or not value or len(value) > 200 or value != value.strip() or "  " in value
        or unicodedata.normalize("NFC", value) != value
        or any(unicodedata.category(c) in _INVISIBLE or (c.isspace() and c != " ") for c in value)
    ):
        raise InstrumentError("instrument.issuer must be a non-empty string of at most 200 characters in NFC, its "
                              "words separated by single spaces, without surrounding spaces or invisible or "
                              "control characters")
    return value


def parse_instrument(value: Any) -> Instrument:
    """The typed record from its JSON value; InstrumentError naming the field on anything else."""
    obj = _exact(value, "instrument", FIELDS)
    kind = obj["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise InstrumentError(f"instrument.kind must be one of {sorted(KINDS)}")
    issuer = _issuer(obj["issuer"])
    delivery = _exact(obj["delivery"], "instrument.delivery", DELIVERY_FIELDS)
    start = _int(delivery["start"], "instrument.delivery.start", 0, MAX_TIME)
    end = _int(delivery["end"], "instrument.delivery.end", 0, MAX_TIME)
    if end <= start:
        raise InstrumentError("instrument.delivery must end after it starts ([start, end), start < end)")
    rate = _int(obj["rate_kg_per_kwh_e4"], "instrument.rate_kg_per_kwh_e4", 0, MAX_RATE_E4)
    if kind in ZERO_RATE_KINDS and rate != 0:
        raise InstrumentError(f"instrument.rate_kg_per_kwh_e4 of a {kind} must be 0 (renewable generation only)")
    evidence = obj["evidence_sha256"]
    if evidence is not None:
        evidence = _matching(evidence, "instrument.evidence_sha256", _SHA256, "64 lowercase hex digits or null")
    return Instrument(
        kind=kind,
        instrument_id=_matching(obj["instrument_id"], "instrument.instrument_id", _INSTRUMENT_ID,
                                "1-128 letters, digits or . _ : / - (starting with a letter or digit)"),
        issuer=issuer,
        site_id=_matching(obj["site_id"], "instrument.site_id", _SITE_ID, "a site id"),
        volume_wh=_int(obj["volume_wh"], "instrument.volume_wh", 1, MAX_VOLUME_WH),
        delivery_start=start,
        delivery_end=end,
        rate_e4=rate,
        evidence_sha256=evidence,
    )


def period_share(instrument: Instrument, start: int, end: int) -> int:
    """The Wh of ``instrument`` that period [start, end) may claim: its volume spread evenly over its delivery
    period, F(x) = floor(volume x (x - d_start) / (d_end - d_start)), the period getting F(min(end, d_end)) -
    F(max(start, d_start)). The shares of adjacent periods telescope, so however time is cut into statement
    periods their shares add up to the volume exactly, and no Wh is claimed twice."""
    lo, hi = max(start, instrument.delivery_start), min(end, instrument.delivery_end)
    if hi <= lo:
        return 0
    span = instrument.delivery_end - instrument.delivery_start

    def cumulative(x: int) -> int:
        return instrument.volume_wh * (x - instrument.delivery_start) // span

    return cumulative(hi) - cumulative(lo)
