"""Write docs/conformance/anchor/*.json: the cases of opening a checkpoint's on-chain commitment.

`python -m tests.protocol.make_anchor_cases` regenerates them (deterministic). Each case: the sequence asked
for, the commitment the registry stores for it, the CheckpointAnchored events a node returned, and the verdict:
the index of the event that opens the commitment, or the reason it is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from carbontrace_protocol.anchor_commitment import checkpoint_commitment

CASES_DIR = Path(__file__).resolve().parents[2] / "docs" / "conformance" / "anchor"
ROOT = hashlib.sha256(b"log root of size 5").digest()
OTHER_ROOT = hashlib.sha256(b"another root").digest()
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
OTHER_CID = "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq"
SEQ = 2
BLOCK = 41


def _event(seq: int, tree_size: int, root: bytes, cid: str, block: int = BLOCK) -> dict[str, Any]:
    return {"sequence": seq, "tree_size": tree_size, "root": root.hex(), "cid": cid, "block_number": block}


TRUE_EVENT = _event(SEQ, 5, ROOT, CID)
CASES: dict[str, tuple[str, list[dict[str, Any]], int | None]] = {
    "valid": ("the event's fields hash to the stored commitment", [TRUE_EVENT], 0),
    "valid-after-reorged-log": (
        "a node also returns a log of a block since reorged away (another root); the true one still opens",
        [_event(SEQ, 5, OTHER_ROOT, CID, BLOCK - 1), TRUE_EVENT], 1,
    ),
    "valid-utf8-cid": ("the cid is hashed as its UTF-8 bytes", None, 0),  # built below
    "tamper-cid": ("the event names another blob", [_event(SEQ, 5, ROOT, OTHER_CID)], None),
    "tamper-root": ("the event states another root", [_event(SEQ, 5, OTHER_ROOT, CID)], None),
    "tamper-tree-size": ("the event states another size", [_event(SEQ, 6, ROOT, CID)], None),
    "tamper-sequence": ("the event is another checkpoint's, with the same fields", [_event(SEQ + 1, 5, ROOT, CID)], None),
    "missing-event": ("the node returns no event for the sequence", [], None),
    "tree-size-zero": ("size 0 is never anchored: no commitment opens with it", [_event(SEQ, 0, ROOT, CID)], None),
}


def build() -> dict[str, dict[str, Any]]:
    out = {}
    for name, (description, events, opens) in CASES.items():
        commitment = checkpoint_commitment(5, ROOT, CID)
        if name == "valid-utf8-cid":
            cid = "bafkrei" + "é" * 26
            events = [_event(SEQ, 5, ROOT, cid)]
            commitment = checkpoint_commitment(5, ROOT, cid)
        assert events is not None
        expected = {"verdict": "opened", "event": opens} if opens is not None else {
            "verdict": "commitment_mismatch", "event": None}
        out[name] = {"name": name, "description": description, "sequence": SEQ, "commitment": commitment.hex(),
                     "events": events, "expected": expected}
    return out


def main() -> None:
    CASES_DIR.mkdir(parents=True, exist_ok=True)
    for name, case in build().items():
        (CASES_DIR / f"{name}.json").write_text(json.dumps(case, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
