"""Write docs/conformance/flux/: one JSON file per chamber-flux case, the signed record with its expected verdict.

Run as ``python -m tests.protocol.make_flux_conformance [DIR]``; tests/protocol/test_flux_conformance.py checks
the stored files. The device key comes from a fixed seed and signatures are deterministic (RFC 6979), the
samples from a seeded generator rounded to integers, so a regenerated set is byte-identical.

An accepted case carries its samples and chamber, so another implementation recomputes the whole record from
them (docs/protocol.md, section 7) and compares it with ``expected.record``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

from carbontrace_protocol import cbor, cose, errors, flux, p256
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.verify import verify_flux

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "docs" / "conformance" / "flux"
KEY = p256.private_key_from_bytes(hashlib.sha256(b"carbontrace flux conformance").digest())
DEVICE = "chamber-1"
FIRMWARE = "0.5.0"
START = 1764126000
SOIL = {"volume_ml": 20000, "area_cm2": 1000, "temp_mc": 18500, "pressure_pa": 100800}
# a closed greenhouse bay: 600 m³ over 200 m², noon
GREENHOUSE = {"volume_ml": 600_000_000, "area_cm2": 2_000_000, "temp_mc": 27000, "pressure_pa": 101200}


def _series(start_ppm: int, ppm_per_s: float, noise: float, seed: int, every_s: int = 5, length_s: int = 180,
            shape: str = "line") -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out = []
    for t in range(0, length_s + 1, every_s):
        ideal = start_ppm + ppm_per_s * t
        if shape == "saturating":
            ideal = start_ppm + 300 * (1 - math.exp(-t / 90))
        out.append((t, round(ideal + rng.gauss(0, noise))))
    return out


class Case:
    def __init__(self, name: str, description: str, samples: list[tuple[int, int]], chamber: dict[str, int],
                 tamper: str | None = None) -> None:
        self.name = name
        self.description = description
        self.samples = samples
        self.chamber = chamber
        self.tamper = tamper

    def record(self) -> flux.Flux:
        length = self.samples[-1][0]
        return flux.compute_flux(DEVICE, FIRMWARE, [START, START + length], [500, 500 + len(self.samples) - 1],
                                 self.samples, **self.chamber)

    def message(self) -> bytes:
        record = self.record()
        if self.tamper is None:
            return flux.sign_flux(record, KEY)
        if self.tamper == "reading":
            return sign_reading(Reading(DEVICE, 500, START, FIRMWARE, co2_ppm=self.samples[0][1]), KEY)
        body = record.as_map()
        content_type = flux.CONTENT_FORMAT_CBOR
        if self.tamper == "flux-edited":
            body["flux"] = cbor.Tag(cbor.TAG_DECIMAL_FRACTION, [flux.FLUX_EXPONENT, -1 * record.flux_e3 // 2])
        elif self.tamper == "qa-edited":
            body["qa"] = flux.QA_OK
        elif self.tamper == "unknown-field":
            body["co2"] = self.samples[-1][1]
        elif self.tamper == "reading-content-type":
            content_type = cose.CONTENT_FORMAT_SENML_CBOR
        payload = cbor.encode(body)
        protected = cose.protected_header(DEVICE.encode(), content_type)
        signature = p256.sign(KEY, cose.sig_structure(protected, payload))
        message = cbor.encode(cbor.Tag(cbor.TAG_COSE_SIGN1, [protected, {}, payload, signature]))
        if self.tamper == "bad-signature":
            message = message[:-1] + bytes([message[-1] ^ 1])
        return message


CASES = [
    Case("valid-greenhouse-uptake", "a closed greenhouse bay at noon: CO2 falls 0.15 ppm/s, a net uptake (negative "
         "flux) with QA ok", _series(520, -0.15, 1.5, 1, every_s=10, length_s=600), GREENHOUSE),
    Case("valid-soil-respiration", "a soil collar: CO2 rises 0.2 ppm/s, an emission (positive flux) with QA ok",
         _series(430, 0.2, 1.0, 2), SOIL),
    Case("valid-too-few-samples", "four samples: a flux is computed and signed, flagged too_few_samples (not "
         "counted in a total)", _series(430, 0.2, 1.0, 3, every_s=60), SOIL),
    Case("valid-low-r2", "a flux near zero in sensor noise: R² below 0.90, flagged low_r2", _series(430, 0.01, 6.0, 4),
         SOIL),
    Case("valid-nonlinear", "a headspace approaching a plateau: a straight line fits with a high R² but the halves' "
         "slopes differ more than twofold, flagged nonlinear", _series(430, 0, 0.5, 5, shape="saturating"), SOIL),
    Case("rejected-flux-edited", "the flux figure halved and re-signed: it no longer follows from the slope and the "
         "chamber", _series(430, 0.2, 1.0, 2), SOIL, tamper="flux-edited"),
    Case("rejected-qa-edited", "a low-R² record re-signed as ok", _series(430, 0.01, 6.0, 4), SOIL, tamper="qa-edited"),
    Case("rejected-unknown-field", "a concentration slipped into the flux record", _series(430, 0.2, 1.0, 2), SOIL,
         tamper="unknown-field"),
    Case("rejected-reading-is-not-a-flux", "a signed CO2 concentration reading offered as a flux",
         _series(430, 0.2, 1.0, 2), SOIL, tamper="reading"),
    Case("rejected-reading-content-type", "a flux record signed under the reading's content type (112)",
         _series(430, 0.2, 1.0, 2), SOIL, tamper="reading-content-type"),
    Case("rejected-bad-signature", "one signature bit flipped", _series(430, 0.2, 1.0, 2), SOIL, tamper="bad-signature"),
]
EXPECTED = {
    "valid-greenhouse-uptake": flux.QA_OK,
    "valid-soil-respiration": flux.QA_OK,
    "valid-too-few-samples": flux.QA_TOO_FEW_SAMPLES,
    "valid-low-r2": flux.QA_LOW_R2,
    "valid-nonlinear": flux.QA_NONLINEAR,
    "rejected-flux-edited": "inconsistent_flux",
    "rejected-qa-edited": "inconsistent_flux",
    "rejected-unknown-field": "malformed_flux",
    "rejected-reading-is-not-a-flux": "not_a_flux",
    "rejected-reading-content-type": "not_a_flux",
    "rejected-bad-signature": "bad_signature",
}


def record_json(record: flux.Flux) -> dict[str, Any]:
    """The record's fields as JSON: decimal fractions as {"e", "m"}, the digest in hex."""
    out: dict[str, Any] = {}
    for name, value in record.as_map().items():
        if isinstance(value, cbor.Tag):
            out[name] = {"e": value.value[0], "m": value.value[1]}
        elif isinstance(value, bytes):
            out[name] = value.hex()
        else:
            out[name] = value
    return out


def case_document(case: Case) -> dict[str, Any]:
    message = case.message()
    public = p256.public_key(KEY)
    try:
        record = verify_flux(message, public)
        expected: dict[str, Any] = {"verdict": "accepted", "record": record_json(record)}
    except errors.ProtocolError as err:
        expected = {"verdict": "rejected", "reason": err.reason}
    return {
        "name": case.name,
        "description": case.description,
        "device_public_key": public.hex(),
        "message": message.hex(),
        "samples": [list(s) for s in case.samples],
        "chamber": case.chamber,
        "expected": expected,
    }


def main(argv: list[str]) -> None:
    target = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    target.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        document = case_document(case)
        outcome = document["expected"].get("reason") or document["expected"]["record"]["qa"]
        if outcome != EXPECTED[case.name]:
            raise SystemExit(f"case {case.name}: verdict {document['expected']} is not the intended one")
        (target / f"{case.name}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n",
                                                  encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
