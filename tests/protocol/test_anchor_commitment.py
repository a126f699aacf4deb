"""Opening a checkpoint's on-chain commitment: the conformance cases in docs/conformance/anchor/, one per file,
and the commitment's encoding against an independent keccak of the packed bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak

from carbontrace_protocol.anchor_commitment import (
    AnchoredFields,
    CommitmentMismatch,
    checkpoint_commitment,
    opened_checkpoint,
)
from tests.protocol.make_anchor_cases import CASES_DIR, build

CASE_FILES = sorted(CASES_DIR.glob("*.json"))


def test_case_files_are_what_the_generator_writes() -> None:
    on_disk = {path.stem: json.loads(path.read_text()) for path in CASE_FILES}
    assert on_disk == build(), "stale: python -m tests.protocol.make_anchor_cases"


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_anchor_case(path: Path) -> None:
    case = json.loads(path.read_text())
    events = [
        AnchoredFields(e["sequence"], e["tree_size"], bytes.fromhex(e["root"]), e["cid"], e["block_number"])
        for e in case["events"]
    ]
    stored = bytes.fromhex(case["commitment"])
    expected = case["expected"]
    if expected["verdict"] == "opened":
        assert opened_checkpoint(case["sequence"], stored, events) == events[expected["event"]]
    else:
        with pytest.raises(CommitmentMismatch) as err:
            opened_checkpoint(case["sequence"], stored, events)
        assert err.value.reason == expected["verdict"]


def test_commitment_is_keccak_of_the_packed_fields() -> None:
    root = bytes(range(32))
    digest = pycryptodome_keccak.new(digest_bits=256)
    digest.update((2**40 + 3).to_bytes(8, "big") + root + b"bafkreiexample")
    assert checkpoint_commitment(2**40 + 3, root, "bafkreiexample") == digest.digest()


@pytest.mark.parametrize(
    ("size", "root", "cid"),
    [(0, bytes(32), "b"), (2**48, bytes(32), "b"), (1, bytes(31), "b"), (1, bytes(32), ""), (1, bytes(32), "b" * 65)],
    ids=["size-0", "size-2^48", "short-root", "empty-cid", "long-cid"],
)
def test_what_the_contract_refuses_has_no_commitment(size: int, root: bytes, cid: str) -> None:
    with pytest.raises(ValueError):
        checkpoint_commitment(size, root, cid)
