"""Write docs/conformance/registry-*.json: a bundle verified across a hand-over to a successor registry.

`python -m tests.trace.make_registry_cases` regenerates them (deterministic) from docs/conformance/
valid-reading.json: its bundle was anchored on registry OLD; the cases add a successor NEW that records OLD's
final checkpoint and carries its keys (docs/proof-bundle.md, "The chain of registries"), then pin the trust
anchor to one of the two and edit one fact of the chain of registries per case. Run it again after
`python -m tests.trace.make_conformance` rewrites valid-reading.json.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from carbontrace_protocol.anchor_commitment import checkpoint_commitment
from carbontrace_protocol.ids import KEY_REVOKED
from carbontrace_protocol.proof_verify import STEP_EXIT

CONFORMANCE = Path(__file__).resolve().parents[2] / "docs" / "conformance"
SOURCE = CONFORMANCE / "valid-reading.json"
NEW = "0x" + hashlib.sha256(b"carbontrace successor registry").hexdigest()[:40]
VALID = {"status": "valid", "failed_step": None, "exit_code": 0}
BROKEN = {"status": "invalid", "failed_step": "registry_chain", "exit_code": STEP_EXIT["registry_chain"]}


def _chains(source: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(OLD's address, OLD's recorded chain sealed for NEW, NEW's recorded chain succeeding it)."""
    old_address = source["trust"]["registry"]
    old = copy.deepcopy(source["chain"])
    count = old["checkpoint_count"]
    last = next(c for c in old["checkpoints"] if c["seq"] == count - 1)
    old["link"] = {
        "predecessor": None, "predecessor_checkpoint_count": 0, "predecessor_tree_size": 0,
        "predecessor_commitment": "00" * 32, "successor": NEW,
    }
    new = {
        "chain_id": old["chain_id"], "has_code": True, "checkpoint_count": count + 1, "checkpoints": [],
        "keys": copy.deepcopy(old["keys"]),  # carried with their history
        "signers": copy.deepcopy(old["signers"]),
        "link": {
            "predecessor": old_address, "predecessor_checkpoint_count": count,
            "predecessor_tree_size": last["tree_size"],
            "predecessor_commitment": checkpoint_commitment(
                last["tree_size"], bytes.fromhex(last["root"]), last["cid"]).hex(),
            "successor": None,
        },
    }
    return old_address, old, new


def _case(name: str, description: str, source: dict[str, Any], pinned: str, chain: dict[str, Any],
          others: dict[str, dict[str, Any]], expected: dict[str, Any], names: str | None = None) -> dict[str, Any]:
    document = copy.deepcopy(source["document"])
    if names is not None:
        document["chain"]["registry"] = names
    top = dict(chain, registries=others)
    trust = dict(source["trust"], registry=pinned)
    return {"name": name, "description": description, "trust": trust, "chain": top, "document": document,
            "expected": expected}


def build() -> dict[str, dict[str, Any]]:
    source = json.loads(SOURCE.read_text())
    old_address, old, new = _chains(source)
    cases = [
        _case("registry-valid-across-migration",
              "the bundle names the old registry; the verifier is pinned to its successor and follows the link "
              "back (each way checked, the recorded final checkpoint opened on the old registry)",
              source, NEW, new, {old_address: old}, VALID),
        _case("registry-valid-bundle-names-the-successor",
              "a bundle made after the hand-over names the successor; its checkpoints are all on the old "
              "registry, read there through the link", source, NEW, new, {old_address: old}, VALID, names=NEW),
        _case("registry-valid-pinned-to-the-predecessor",
              "pinned to the old registry, a bundle naming its successor: the successor named by the old "
              "registry's seal, the link checked both ways", source, old_address, old, {NEW: new}, VALID, names=NEW),
    ]
    forged = copy.deepcopy(new)
    forged["link"]["predecessor_commitment"] = hashlib.sha256(b"another final checkpoint").hexdigest()
    cases.append(_case("registry-forged-predecessor",
                       "the successor records a final checkpoint that is not the old registry's last one",
                       source, NEW, forged, {old_address: old}, BROKEN))
    unsealed = copy.deepcopy(old)
    unsealed["link"]["successor"] = None
    cases.append(_case("registry-predecessor-never-named-this-successor",
                       "the registry the successor names as predecessor was never sealed for it (names no successor)",
                       source, NEW, new, {old_address: unsealed}, BROKEN))
    forked = copy.deepcopy(old)
    forked["checkpoint_count"] += 1
    cases.append(_case("registry-anchored-on-the-predecessor-after-the-seal",
                       "the old registry holds a checkpoint past the final one the successor recorded: the history "
                       "forked at the hand-over", source, NEW, new, {old_address: forked}, BROKEN))
    rewritten = copy.deepcopy(new)
    device_key = next(k for k in rewritten["keys"] if k["kind"] == 1)
    device_key["state"], device_key["revoked_at"] = KEY_REVOKED, 0
    cases.append(_case("registry-carried-key-differs",
                       "the successor carries the device key as revoked at checkpoint 0, which the old registry "
                       "never said: a carried record must keep its history", source, NEW, rewritten,
                       {old_address: old}, BROKEN))
    return {c["name"]: c for c in cases}


def main() -> None:
    for name, case in build().items():
        (CONFORMANCE / f"{name}.json").write_text(json.dumps(case, sort_keys=True, indent=1) + "\n")


if __name__ == "__main__":
    main()
