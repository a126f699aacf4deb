"""Every Wycheproof ECDSA P-256/SHA-256 vector, DER and IEEE P1363, classified right by verify_es256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrace_protocol import p256
from carbontrace_protocol.errors import MalformedCOSE
from carbontrace_protocol.verify import der_signature_to_raw, verify_es256


def _cases(path: Path) -> list[tuple[str, bytes, bytes, bytes, bool]]:
    data = json.loads(path.read_text())
    assert data["algorithm"] == "ECDSA"
    cases = []
    for group in data["testGroups"]:
        assert group["sha"] == "SHA-256"
        key = bytes.fromhex(group["publicKey"]["uncompressed"])
        for test in group["tests"]:
            assert test["result"] in ("valid", "invalid"), "these files hold no 'acceptable' results"
            cases.append(
                (
                    f"tc{test['tcId']}",
                    key,
                    bytes.fromhex(test["msg"]),
                    bytes.fromhex(test["sig"]),
                    test["result"] == "valid",
                )
            )
    return cases


def test_der_vectors(vectors: Path) -> None:
    cases = _cases(vectors / "wycheproof" / "ecdsa_secp256r1_sha256_test.json")
    assert len(cases) == 484
    wrong = []
    for name, key, msg, sig, valid in cases:
        try:
            raw = der_signature_to_raw(sig)
        except MalformedCOSE:
            accepted = False
        else:
            accepted = verify_es256(key, msg, raw)
        if accepted != valid:
            wrong.append(name)
    assert wrong == [], f"misclassified DER vectors: {wrong}"


def test_p1363_vectors(vectors: Path) -> None:
    cases = _cases(vectors / "wycheproof" / "ecdsa_secp256r1_sha256_p1363_test.json")
    assert len(cases) == 262
    wrong = [name for name, key, msg, sig, valid in cases if verify_es256(key, msg, sig) != valid]
    assert wrong == [], f"misclassified P1363 vectors: {wrong}"


@pytest.mark.slow
def test_pure_python_verifier_agrees_on_p1363(vectors: Path) -> None:
    """The device-side pure verifier classifies the same vectors the same way (a cross-check of p256.py)."""
    cases = _cases(vectors / "wycheproof" / "ecdsa_secp256r1_sha256_p1363_test.json")
    wrong = [name for name, key, msg, sig, valid in cases if p256.verify(key, msg, sig) != valid]
    assert wrong == []
