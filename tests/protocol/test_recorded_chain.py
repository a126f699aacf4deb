"""RecordedChain: strict JSON both ways; unknown keys read as none, unknown checkpoints are an error."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from carbontrace_protocol.ids import KEY_ACTIVE, KEY_NONE, KEY_REVOKED, SIGNER_DEVICE, SIGNER_GATEWAY
from carbontrace_protocol.proof_verify import CachedChainReader, ChainCheckpoint, ChainKey, ChainUnreachable
from carbontrace_protocol.recorded_chain import MalformedRecordedChain, NotRecorded, RecordedChain, RecordingChain

A, B, E = b"\xaa" * 32, b"\xbb" * 32, b"\xee" * 32


def sample() -> RecordedChain:
    return RecordedChain(
        31337,
        True,
        2,
        {0: ChainCheckpoint(2, A, "bafkreiaaaa"), 1: ChainCheckpoint(5, B, "bafkreibbbb")},
        {
            A: ChainKey(KEY_ACTIVE, SIGNER_DEVICE, B, E, 0, None),
            B: ChainKey(KEY_REVOKED, SIGNER_GATEWAY, A, E, 0, 1),
            E: ChainKey(KEY_NONE, 0, bytes(32), bytes(32), 0, None),  # read, but not written
        },
        {(E, SIGNER_DEVICE): [B], (E, SIGNER_GATEWAY): [A]},
    )


def test_round_trip() -> None:
    document = sample().to_json()
    assert [k["fingerprint"] for k in document["keys"]] == [A.hex(), B.hex()]
    again = RecordedChain.from_json(copy.deepcopy(document))
    assert again.to_json() == document
    assert again.key(A) == sample().key(A) and again.checkpoint(1) == sample().checkpoint(1)
    assert again.signers_of(E, SIGNER_GATEWAY) == [A]


def test_unrecorded_key_is_none_and_unrecorded_checkpoint_an_error() -> None:
    chain = RecordedChain.from_json(sample().to_json())
    assert chain.key(b"\x01" * 32).state == KEY_NONE
    with pytest.raises(NotRecorded):
        chain.checkpoint(7)
    with pytest.raises(ChainUnreachable):  # what a verifier sees: nothing concluded
        CachedChainReader(chain).checkpoint(7)


def _mutations() -> list[tuple[str, Any]]:
    def set_(path: tuple[Any, ...], value: Any) -> Any:
        def apply(doc: dict[str, Any]) -> None:
            target = doc
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value

        return apply

    return [
        ("unknown field", set_(("extra",), 1)),
        ("float for int", set_(("chain_id",), 31337.0)),
        ("has_code 1", set_(("has_code",), 1)),
        ("0x hex", set_(("checkpoints", 0, "root"), "0x" + A.hex()[2:])),
        ("uppercase hex", set_(("keys", 0, "fingerprint"), A.hex().upper())),
        ("state 0 written", set_(("keys", 0, "state"), 0)),
        ("revoked without revoked_at", set_(("keys", 1, "revoked_at"), None)),
        ("active with revoked_at", set_(("keys", 0, "revoked_at"), 3)),
        ("unsorted", lambda d: d["checkpoints"].reverse()),
        ("false for 0", set_(("checkpoints", 0, "seq"), False)),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_strict(name: str, mutate: Any) -> None:
    document = sample().to_json()
    mutate(document)
    with pytest.raises(MalformedRecordedChain):
        RecordedChain.from_json(document)


def test_recording_chain_records_what_was_read() -> None:
    recording = RecordingChain(sample())
    recording.key(A)
    recording.key(b"\x02" * 32)
    recording.checkpoint(1)
    recording.signers_of(E, SIGNER_DEVICE)
    recorded = recording.recorded().to_json()
    assert [k["fingerprint"] for k in recorded["keys"]] == [A.hex()]
    assert [c["seq"] for c in recorded["checkpoints"]] == [1]
    assert recorded["signers"] == [{"enterprise_id": E.hex(), "kind": SIGNER_DEVICE, "signers": [B.hex()]}]
    assert (recorded["chain_id"], recorded["has_code"], recorded["checkpoint_count"]) == (31337, True, 2)
