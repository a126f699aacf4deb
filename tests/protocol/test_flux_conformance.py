"""The chamber-flux conformance set (docs/conformance/flux/): each case reaches the verdict its file states.

Run as another implementation would: verify the signed message under the device key; for an accepted case,
also recompute the record from the file's samples and chamber and compare it field by field with the file's
expected record (the expected figures are in the file, never computed here from the record under test).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carbontrace_protocol import errors, flux
from carbontrace_protocol.verify import verify_flux
from tests.conftest import REPO_ROOT
from tests.protocol.make_flux_conformance import record_json

CASES_DIR = Path(REPO_ROOT) / "docs" / "conformance" / "flux"
CASES = sorted(CASES_DIR.glob("*.json"))


def test_every_verdict_is_there() -> None:
    names = {p.stem for p in CASES}
    assert {"valid-greenhouse-uptake", "valid-soil-respiration", "valid-too-few-samples", "valid-low-r2",
            "valid-nonlinear", "rejected-flux-edited", "rejected-reading-is-not-a-flux"} <= names


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case_reaches_its_verdict(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert set(case) == {"name", "description", "device_public_key", "message", "samples", "chamber", "expected"}
    key = bytes.fromhex(case["device_public_key"])
    message = bytes.fromhex(case["message"])
    expected = case["expected"]
    if expected["verdict"] == "rejected":
        with pytest.raises(errors.ProtocolError) as caught:
            verify_flux(message, key)
        assert caught.value.reason == expected["reason"]
        return
    assert expected["verdict"] == "accepted"
    record = verify_flux(message, key)
    assert record_json(record) == expected["record"]
    samples = [(t, c) for t, c in case["samples"]]
    recomputed = flux.compute_flux(record.device_id, record.firmware, record.session, record.seq, samples,
                                   **case["chamber"])
    assert record_json(recomputed) == expected["record"]


def test_uptake_is_negative_and_respiration_positive() -> None:
    def figure(name: str) -> int:
        document = json.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"))
        value: int = document["expected"]["record"]["flux"]["m"]
        return value

    assert figure("valid-greenhouse-uptake") < 0 < figure("valid-soil-respiration")


def test_regenerating_gives_the_same_files(tmp_path: Path) -> None:
    from tests.protocol.make_flux_conformance import main

    main(["make", str(tmp_path)])
    for path in CASES:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in CASES}
