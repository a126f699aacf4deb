"""carbontrace_protocol.sealed_blob: round trip, wrong key, every tampered part, strict parse."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from carbontrace_protocol import cbor, p256
from carbontrace_protocol import sealed_blob as sb
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.ids import FINGERPRINT_SIZE, key_fingerprint

BATCH_ID = "gw-001/7"
PLAINTEXT = cbor.encode({"header": b"signed header", "leaves": [b"leaf %d" % i for i in range(50)]})


def _key(n: int) -> ec.EllipticCurvePrivateKey:
    return sb.private_key_from_int(0x1000 + n)


CLOUD, ENTERPRISE, REGULATOR, OUTSIDER = (_key(i) for i in range(4))


def _sealed(*readers: ec.EllipticCurvePrivateKey) -> bytes:
    return sb.seal(PLAINTEXT, BATCH_ID, [sb.public_key_bytes(k) for k in readers or (CLOUD, ENTERPRISE, REGULATOR)])


def test_every_recipient_opens_it() -> None:
    sealed = _sealed()
    for reader in (CLOUD, ENTERPRISE, REGULATOR):
        assert sb.open_sealed(sealed, reader, BATCH_ID) == PLAINTEXT
    envelope = sb.parse(sealed)
    assert envelope.batch_id == BATCH_ID
    assert set(envelope.fingerprints) == {key_fingerprint(sb.public_key_bytes(k)) for k in (CLOUD, ENTERPRISE, REGULATOR)}
    assert PLAINTEXT not in sealed


def test_fresh_data_key_and_nonce_per_seal() -> None:
    one, two = _sealed(), _sealed()
    assert one != two and cid_for(one) != cid_for(two)
    assert sb.parse(one).nonce != sb.parse(two).nonce


def test_size_overhead_is_fixed_per_recipient() -> None:
    overhead = len(_sealed(CLOUD)) - len(PLAINTEXT)
    assert len(_sealed(CLOUD, ENTERPRISE)) - len(PLAINTEXT) - overhead == 1 + 2 + FINGERPRINT_SIZE + 2 + sb.WRAPPED_KEY_SIZE
    assert overhead < 300  # map keys, nonce, tag, one recipient: 260 bytes


def test_a_reader_listed_twice_gets_one_entry() -> None:
    assert len(sb.parse(_sealed(CLOUD, CLOUD, ENTERPRISE)).recipients) == 2


def test_wrong_key_is_not_a_recipient() -> None:
    with pytest.raises(sb.NotARecipient, match="is not a recipient"):
        sb.open_sealed(_sealed(), OUTSIDER)
    assert sb.NotARecipient.reason == "not_a_recipient"


def test_other_batch_id_is_refused() -> None:
    with pytest.raises(sb.MalformedSealedBlob, match="not 'gw-001/8'"):
        sb.open_sealed(_sealed(), CLOUD, "gw-001/8")


def _rewrite(sealed: bytes, change: Callable[[sb.SealedBlob], sb.SealedBlob]) -> bytes:
    return change(sb.parse(sealed)).encode()


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _wrapped_flip(envelope: sb.SealedBlob) -> sb.SealedBlob:
    (fp, wrapped), *rest = envelope.recipients
    return sb.SealedBlob(envelope.batch_id, envelope.nonce, ((fp, _flip(wrapped, 80)), *rest), envelope.ciphertext)


def _drop_recipient(envelope: sb.SealedBlob) -> sb.SealedBlob:
    return sb.SealedBlob(envelope.batch_id, envelope.nonce, envelope.recipients[1:], envelope.ciphertext)


TAMPERS: dict[str, Callable[[sb.SealedBlob], sb.SealedBlob]] = {
    "ciphertext byte": lambda e: sb.SealedBlob(e.batch_id, e.nonce, e.recipients, _flip(e.ciphertext, 3)),
    "tag byte": lambda e: sb.SealedBlob(e.batch_id, e.nonce, e.recipients, _flip(e.ciphertext, len(e.ciphertext) - 1)),
    "truncated ciphertext": lambda e: sb.SealedBlob(e.batch_id, e.nonce, e.recipients, e.ciphertext[:-20]),
    "nonce": lambda e: sb.SealedBlob(e.batch_id, _flip(e.nonce, 0), e.recipients, e.ciphertext),
    "batch id (AAD)": lambda e: sb.SealedBlob("gw-001/8", e.nonce, e.recipients, e.ciphertext),
    "recipient list (AAD)": _drop_recipient,
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampered_envelope_does_not_open(name: str) -> None:
    sealed = _sealed()
    tampered = _rewrite(sealed, TAMPERS[name])
    assert cid_for(tampered) != cid_for(sealed)  # the content store's check catches it before anyone opens it
    # Whoever still holds an entry cannot open it either (the last key stays listed in every case above).
    with pytest.raises(sb.OpenFailed):
        sb.open_sealed(tampered, _key_listed_last(tampered))


def _key_listed_last(sealed: bytes) -> ec.EllipticCurvePrivateKey:
    last = sb.parse(sealed).recipients[-1][0]
    return next(k for k in (CLOUD, ENTERPRISE, REGULATOR) if key_fingerprint(sb.public_key_bytes(k)) == last)


def test_tampered_wrapped_key_fails_for_its_reader_only() -> None:
    tampered = _rewrite(_sealed(), _wrapped_flip)
    first = sb.parse(tampered).recipients[0][0]
    owner = next(k for k in (CLOUD, ENTERPRISE, REGULATOR) if key_fingerprint(sb.public_key_bytes(k)) == first)
    with pytest.raises(sb.OpenFailed, match="wrapped data key"):
        sb.open_sealed(tampered, owner)


def _map_of(sealed: bytes) -> dict[str, object]:
    item = cbor.decode(sealed)
    assert isinstance(item, dict)
    return item


def _with(sealed: bytes, **changes: object) -> bytes:
    return cbor.encode(_map_of(sealed) | changes)


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "not CBOR": lambda s: s[:-1],
    "trailing byte": lambda s: s + b"\x00",
    "a list": lambda s: cbor.encode([1, 2]),
    "extra key": lambda s: _with(s, extra=1),
    "missing key": lambda s: cbor.encode({k: v for k, v in _map_of(s).items() if k != "nonce"}),
    "version 2": lambda s: _with(s, v=2),
    "version true": lambda s: _with(s, v=True),
    "other alg": lambda s: _with(s, alg="A128GCM"),
    "empty batch id": lambda s: _with(s, batch=""),
    "short nonce": lambda s: _with(s, nonce=b"\x00" * 11),
    "short ciphertext": lambda s: _with(s, ct=b"\x00" * 15),
    "no recipients": lambda s: _with(s, recipients=[]),
    "recipient not a pair": lambda s: _with(s, recipients=[[b"\x00" * 32]]),
    "short fingerprint": lambda s: _with(s, recipients=[[b"\x00" * 31, b"\x00" * sb.WRAPPED_KEY_SIZE]]),
    "short wrapped key": lambda s: _with(s, recipients=[[b"\x00" * 32, b"\x00" * 112]]),
    "unsorted recipients": lambda s: _with(
        s, recipients=[[b"\x02" * 32, b"\x00" * sb.WRAPPED_KEY_SIZE], [b"\x01" * 32, b"\x00" * sb.WRAPPED_KEY_SIZE]]
    ),
    "duplicate recipient": lambda s: _with(
        s, recipients=[[b"\x01" * 32, b"\x00" * sb.WRAPPED_KEY_SIZE], [b"\x01" * 32, b"\x00" * sb.WRAPPED_KEY_SIZE]]
    ),
    "non-canonical head": lambda s: b"\xb9\x00\x06" + s[1:],  # the 6-entry map head in 3 bytes instead of 1
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_strict_parse(name: str) -> None:
    bad = MALFORMED[name](_sealed())
    with pytest.raises(sb.MalformedSealedBlob):
        sb.parse(bad)
    assert not sb.is_sealed(bad)


def test_plaintext_batch_is_not_sealed() -> None:
    assert not sb.is_sealed(PLAINTEXT)
    assert sb.is_sealed(_sealed())


def test_seal_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        sb.seal(PLAINTEXT, BATCH_ID, [])
    with pytest.raises(ValueError):
        sb.seal(PLAINTEXT, "", [sb.public_key_bytes(CLOUD)])
    with pytest.raises(sb.MalformedSealedBlob):
        sb.seal(PLAINTEXT, BATCH_ID, [b"\x04" + b"\x01" * 64])  # not on the curve


def test_ciphertext_span_covers_the_ciphertext() -> None:
    sealed = _sealed()
    start, end = sb.ciphertext_span(sealed)
    assert sealed[start:end] == sb.parse(sealed).ciphertext
    assert end - start == len(PLAINTEXT) + sb.TAG_SIZE


VECTORS = json.loads((Path(__file__).parent / "sealed_blob_vectors.json").read_text())


def _vector_key(name: str) -> ec.EllipticCurvePrivateKey:
    return sb.private_key_from_int(int(p256.private_key_from_bytes(bytes.fromhex(VECTORS["reader_seeds"][name]))))


def test_recorded_vector_opens_for_each_recipient() -> None:
    sealed = bytes.fromhex(VECTORS["sealed"])
    assert cid_for(sealed) == VECTORS["cid"]
    for name in VECTORS["recipients"]:
        assert sb.open_sealed(sealed, _vector_key(name), VECTORS["batch_id"]).hex() == VECTORS["plaintext"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_recorded_negative_vectors(case: dict[str, str]) -> None:
    with pytest.raises(sb.MalformedSealedBlob if case["reason"] == "malformed_sealed_blob" else ProtocolError) as err:
        sb.open_sealed(bytes.fromhex(case["sealed"]), _vector_key(case["reader"]))
    assert err.value.reason == case["reason"]
