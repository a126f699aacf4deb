"""The re-timing conformance set (docs/conformance/retime/): each case verifies and re-times to its verdict.

Run as another implementation would: verify both signed readings under the device key, then apply the rule
of docs/protocol.md ("Re-timing"); the expected verdict is in the file, never computed here from the same code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carbontrace_protocol.retime import RetimeRejected, required_timestamp
from carbontrace_protocol.verify import verify_reading
from tests.conftest import REPO_ROOT

CASES_DIR = Path(REPO_ROOT) / "docs" / "conformance" / "retime"
CASES = sorted(CASES_DIR.glob("*.json"))


def test_the_four_cases_are_there() -> None:
    assert {p.stem for p in CASES} >= {"valid-retime", "different-boot", "inconsistent-up",
                                       "unsynced-without-reference"}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case_reaches_its_verdict(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert set(case) == {"name", "description", "device_public_key", "reading", "reference", "expected"}
    key = bytes.fromhex(case["device_public_key"])
    reading = verify_reading(bytes.fromhex(case["reading"]), key)
    reference = None if case["reference"] is None else verify_reading(bytes.fromhex(case["reference"]), key)
    expected = case["expected"]
    if expected["verdict"] == "retimed":
        assert required_timestamp(reading, reference) == expected["timestamp"]
    else:
        assert expected["verdict"] == "rejected"
        with pytest.raises(RetimeRejected) as caught:
            required_timestamp(reading, reference)
        assert caught.value.reason == expected["reason"]


def test_regenerating_gives_the_same_files(tmp_path: Path) -> None:
    from tests.protocol.make_retime_conformance import main

    main(["make", str(tmp_path)])
    for path in CASES:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
