"""Sealed batch blobs: the envelope the content store and IPFS keep instead of the plaintext batch.

CPython only (uses ``cryptography``; not shipped to devices). Format, byte by byte: docs/protocol.md, "Sealed
blobs". The envelope is one canonical CBOR map with exactly these keys:

  "v"           1
  "alg"         "A256GCM/HPKE-P256-SHA256-A256GCM"
  "batch"       the batch id (``gateway/batch_seq``), text
  "nonce"       12 random bytes
  "recipients"  [[key fingerprint (32 bytes), wrapped data key (113 bytes)], ...], sorted by fingerprint, unique
  "ct"          AES-256-GCM(data key, nonce, plaintext batch blob, aad) = ciphertext || 16-byte tag

The data key is 32 fresh random bytes per batch. Each reader's copy is wrapped with HPKE (RFC 9180) base mode,
DHKEM(P-256, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM, to the reader's P-256 public key, with
``info = CBOR ["carbontrace blob key v1", batch id, fingerprint]``; the wrapped key is HPKE's enc (65 bytes)
|| the sealed data key (48 bytes). The content AEAD's ``aad = CBOR ["carbontrace sealed batch v1", v, alg,
batch id, recipients]``, so the batch id and the recipient list are authenticated with the readings.

The CID of a sealed blob is that of these exact bytes: anyone can check integrity without a key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from carbontrace_protocol import cbor
from carbontrace_protocol.errors import MalformedCBOR, ProtocolError
from carbontrace_protocol.ids import FINGERPRINT_SIZE, PUBLIC_KEY_SIZE, key_fingerprint

SEALED_FORMAT_VERSION = 1
ALGORITHM = "A256GCM/HPKE-P256-SHA256-A256GCM"
DATA_KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
ENC_SIZE = 65  # HPKE enc of DHKEM(P-256): an uncompressed SEC1 point
WRAPPED_KEY_SIZE = ENC_SIZE + DATA_KEY_SIZE + TAG_SIZE
MAX_RECIPIENTS = 64
CONTENT_AAD_LABEL = "carbontrace sealed batch v1"
KEY_WRAP_INFO_LABEL = "carbontrace blob key v1"
_FIELDS = frozenset({"v", "alg", "batch", "nonce", "recipients", "ct"})
_SUITE = Suite(KEM.P256, KDF.HKDF_SHA256, AEAD.AES_256_GCM)


class MalformedSealedBlob(ProtocolError):
    reason = "malformed_sealed_blob"


class NotARecipient(ProtocolError):
    reason = "not_a_recipient"


class OpenFailed(ProtocolError):
    """A wrapped key or the ciphertext does not authenticate: wrong key, or changed bytes."""

    reason = "open_failed"


@dataclass(frozen=True)
class SealedBlob:
    batch_id: str
    nonce: bytes
    recipients: tuple[tuple[bytes, bytes], ...]  # (fingerprint, wrapped data key), sorted by fingerprint
    ciphertext: bytes  # ciphertext || tag

    @property
    def fingerprints(self) -> tuple[bytes, ...]:
        return tuple(fp for fp, _ in self.recipients)

    def encode(self) -> bytes:
        return cbor.encode(
            {
                "v": SEALED_FORMAT_VERSION,
                "alg": ALGORITHM,
                "batch": self.batch_id,
                "nonce": self.nonce,
                "recipients": [[fp, wrapped] for fp, wrapped in self.recipients],
                "ct": self.ciphertext,
            }
        )


def _content_aad(batch_id: str, recipients: tuple[tuple[bytes, bytes], ...]) -> bytes:
    return cbor.encode(
        [CONTENT_AAD_LABEL, SEALED_FORMAT_VERSION, ALGORITHM, batch_id, [[fp, w] for fp, w in recipients]]
    )


def _wrap_info(batch_id: str, fingerprint: bytes) -> bytes:
    return cbor.encode([KEY_WRAP_INFO_LABEL, batch_id, fingerprint])


def public_key_bytes(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The 65-byte uncompressed SEC1 encoding (what fingerprints are of)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def load_public_key(sec1: bytes) -> ec.EllipticCurvePublicKey:
    """A reader's P-256 public key from 65 bytes of uncompressed SEC1; ``MalformedSealedBlob`` otherwise."""
    if len(sec1) != PUBLIC_KEY_SIZE or sec1[0] != 4:
        raise MalformedSealedBlob("a reader key is 65 bytes of uncompressed SEC1 (0x04 || x || y)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(sec1))
    except ValueError as err:
        raise MalformedSealedBlob(f"reader key is not a P-256 point: {err}") from err


def private_key_from_int(d: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(d, ec.SECP256R1())


def seal(plaintext: bytes, batch_id: str, reader_keys: list[bytes], *, data_key: bytes | None = None) -> bytes:
    """Seal ``plaintext`` (a batch blob) for every reader in ``reader_keys`` (65-byte SEC1 public keys).

    ``data_key`` is for test vectors only; by default a fresh random key is drawn."""
    if not reader_keys:
        raise ValueError("a sealed blob needs at least one recipient")
    if not isinstance(batch_id, str) or not batch_id:
        raise ValueError("batch id must be non-empty text")
    key = os.urandom(DATA_KEY_SIZE) if data_key is None else bytes(data_key)
    if len(key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes")
    wrapped: dict[bytes, bytes] = {}
    for sec1 in reader_keys:
        fingerprint = key_fingerprint(bytes(sec1))
        if fingerprint in wrapped:
            continue  # one reader listed twice (e.g. an enterprise that is also a regulator): one entry
        wrapped[fingerprint] = _SUITE.encrypt(key, load_public_key(sec1), info=_wrap_info(batch_id, fingerprint))
    if len(wrapped) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} recipients")
    recipients = tuple(sorted(wrapped.items()))
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = AESGCM(key).encrypt(nonce, bytes(plaintext), _content_aad(batch_id, recipients))
    return SealedBlob(batch_id, nonce, recipients, ciphertext).encode()


def parse(data: bytes) -> SealedBlob:
    """Parse (not open) a sealed blob; any deviation from the canonical format is ``MalformedSealedBlob``."""
    try:
        item = cbor.decode(data)
    except MalformedCBOR as err:
        raise MalformedSealedBlob(f"sealed blob is not CBOR: {err}") from err
    if not isinstance(item, dict) or set(item) != _FIELDS:
        raise MalformedSealedBlob(f"sealed blob must be a map with exactly the keys {sorted(_FIELDS)}")
    version, alg, batch_id, nonce = item["v"], item["alg"], item["batch"], item["nonce"]
    if type(version) is not int or version != SEALED_FORMAT_VERSION:
        raise MalformedSealedBlob(f"unsupported sealed blob version {version!r}")
    if alg != ALGORITHM:
        raise MalformedSealedBlob(f"unsupported sealed blob algorithm {alg!r}, want {ALGORITHM!r}")
    if not isinstance(batch_id, str) or not batch_id:
        raise MalformedSealedBlob("sealed blob batch id must be non-empty text")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_SIZE:
        raise MalformedSealedBlob(f"nonce must be {NONCE_SIZE} bytes")
    ciphertext = item["ct"]
    if not isinstance(ciphertext, bytes) or len(ciphertext) < TAG_SIZE:
        raise MalformedSealedBlob(f"ciphertext must be bytes of at least the {TAG_SIZE}-byte tag")
    entries = item["recipients"]
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_RECIPIENTS:
        raise MalformedSealedBlob(f"recipients must be a list of 1 to {MAX_RECIPIENTS} entries")
    recipients: list[tuple[bytes, bytes]] = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) != 2 or not all(isinstance(x, bytes) for x in entry):
            raise MalformedSealedBlob("a recipient is [fingerprint, wrapped key], both byte strings")
        fingerprint, wrapped = entry
        if len(fingerprint) != FINGERPRINT_SIZE:
            raise MalformedSealedBlob(f"recipient fingerprint must be {FINGERPRINT_SIZE} bytes, got {len(fingerprint)}")
        if len(wrapped) != WRAPPED_KEY_SIZE:
            raise MalformedSealedBlob(f"wrapped key must be {WRAPPED_KEY_SIZE} bytes, got {len(wrapped)}")
        if recipients and fingerprint <= recipients[-1][0]:
            raise MalformedSealedBlob("recipients must be sorted by fingerprint, each once")
        recipients.append((fingerprint, wrapped))
    sealed = SealedBlob(batch_id, nonce, tuple(recipients), ciphertext)
    if sealed.encode() != bytes(data):
        raise MalformedSealedBlob("sealed blob is not in canonical CBOR")
    return sealed


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` parses as a sealed blob (else, for instance, a plaintext batch stored before sealing)."""
    try:
        parse(data)
    except MalformedSealedBlob:
        return False
    return True


def open_sealed(
    data: bytes | SealedBlob, private_key: ec.EllipticCurvePrivateKey, batch_id: str | None = None
) -> bytes:
    """The plaintext batch blob, for a reader holding ``private_key``.

    ``batch_id``: the batch the caller expects (the envelope must name it). Raises ``NotARecipient`` when the
    key is not among the recipients, ``OpenFailed`` when the wrapped key or the ciphertext does not
    authenticate, ``MalformedSealedBlob`` for a malformed envelope or another batch."""
    sealed = data if isinstance(data, SealedBlob) else parse(data)
    if batch_id is not None and sealed.batch_id != batch_id:
        raise MalformedSealedBlob(f"sealed blob is batch {sealed.batch_id!r}, not {batch_id!r}")
    fingerprint = key_fingerprint(public_key_bytes(private_key))
    wrapped = dict(sealed.recipients).get(fingerprint)
    if wrapped is None:
        raise NotARecipient(f"key {fingerprint.hex()} is not a recipient of sealed batch {sealed.batch_id}")
    try:
        key = _SUITE.decrypt(wrapped, private_key, info=_wrap_info(sealed.batch_id, fingerprint))
    except (InvalidTag, ValueError) as err:
        raise OpenFailed(f"wrapped data key for {fingerprint.hex()} does not authenticate") from err
    if len(key) != DATA_KEY_SIZE:
        raise OpenFailed("unwrapped data key is not 32 bytes")
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _content_aad(sealed.batch_id, sealed.recipients))
    except InvalidTag as err:
        raise OpenFailed(f"ciphertext of sealed batch {sealed.batch_id} does not authenticate") from err


def ciphertext_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the ciphertext (with its tag) inside the sealed bytes: for tamper drills and tests."""
    sealed = parse(data)
    start = bytes(data).find(sealed.ciphertext)
    return start, start + len(sealed.ciphertext)
