"""Write docs/conformance/retime/: one JSON file per re-timing case, signed readings with the expected verdict.

Run as ``python -m tests.protocol.make_retime_conformance [DIR]``; tests/protocol/test_retime_conformance.py
checks the stored files. The device key is derived from a fixed seed and signatures are deterministic
(RFC 6979), so a regenerated set is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from carbontrace_protocol import p256
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, sign_reading
from carbontrace_protocol.retime import (
    DIFFERENT_BOOT,
    INCONSISTENT_UP,
    NO_REFERENCE,
    RetimeRejected,
    required_timestamp,
)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "docs" / "conformance" / "retime"
KEY = p256.private_key_from_bytes(hashlib.sha256(b"carbontrace retime conformance").digest())
DEVICE = "dev-retime-1"
SYNCED_AT = 1764126317


def _unsynced(seq: int, boot: int, up: int) -> Reading:
    return Reading(DEVICE, seq, None, "0.4.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=650, boot=boot, up=up)


def _synced(seq: int, boot: int, up: int) -> Reading:
    return Reading(DEVICE, seq, SYNCED_AT, "0.4.0", co2_ppm=655, boot=boot, up=up)


CASES: list[tuple[str, str, Reading, Reading | None]] = [
    ("valid-retime", "unsynced reading 360 s of uptime before its boot's first synced reading: stored at "
     "the reference's time minus 360 s", _unsynced(3, 7, 40), _synced(9, 7, 400)),
    ("different-boot", "the reference is of the next boot (the counter moved on): its clock says nothing "
     "about the reading's boot", _unsynced(3, 7, 40), _synced(9, 8, 400)),
    ("inconsistent-up", "the unsynced reading claims more uptime than the later reference of its boot",
     _unsynced(3, 7, 500), _synced(9, 7, 400)),
    ("unsynced-without-reference", "an unsynced reading with no reference: it has no time and must not be "
     "stored (not at 1970, not at the gateway's clock)", _unsynced(3, 7, 40), None),
]


def case_document(name: str, description: str, reading: Reading, reference: Reading | None) -> dict[str, Any]:
    try:
        expected: dict[str, Any] = {"verdict": "retimed", "timestamp": required_timestamp(reading, reference)}
    except RetimeRejected as err:
        expected = {"verdict": "rejected", "reason": err.reason}
    return {
        "name": name,
        "description": description,
        "device_public_key": p256.public_key(KEY).hex(),
        "reading": sign_reading(reading, KEY).hex(),
        "reference": None if reference is None else sign_reading(reference, KEY).hex(),
        "expected": expected,
    }


EXPECTED_REASONS = {"different-boot": DIFFERENT_BOOT, "inconsistent-up": INCONSISTENT_UP,
                    "unsynced-without-reference": NO_REFERENCE}


def main(argv: list[str]) -> None:
    target = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, description, reading, reference in CASES:
        document = case_document(name, description, reading, reference)
        if document["expected"].get("reason") != EXPECTED_REASONS.get(name):
            raise SystemExit(f"case {name}: verdict {document['expected']} is not the intended one")
        (target / f"{name}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
