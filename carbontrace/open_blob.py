"""`carbontrace open-blob`: a reader (enterprise, regulator) opens a sealed batch blob offline with its own key.

Checks, in order: the CID of the sealed bytes (when given, or when the file is named by it), the envelope, the
reader's entry, the ciphertext (AES-256-GCM), the batch format, and every Merkle leaf against the root in the
signed header; with ``--gateway-key`` also the header's signature. Needs no cloud and no chain: which gateway key
counts is the chain's to say, see `carbontrace verify` for proof bundles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from carbontrace_protocol import cose, merkle, p256, sealed_blob, views
from carbontrace_protocol.batch import Batch, decode_batch
from carbontrace_protocol.cid import cid_for
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.verify import verify_es256

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def load_reader_key(path: Path) -> Any:
    """A reader's private key file: 32+ bytes of hex (what `carbontrace cloud readers keygen` writes)."""
    seed = bytes.fromhex(path.read_text().strip())
    return sealed_blob.private_key_from_int(int(p256.private_key_from_bytes(seed)))


def _read_blob(path: Path) -> bytes:
    data = path.read_bytes()
    text = data.strip()
    try:  # the API's /blob answer carries hex; a file of hex is accepted too
        if text and len(text) % 2 == 0 and all(chr(b) in "0123456789abcdefABCDEF" for b in text):
            return bytes.fromhex(text.decode())
    except ValueError:
        pass
    return data


def open_batch(data: bytes, key: Any, cid: str | None = None) -> tuple[sealed_blob.SealedBlob, Batch]:
    """(envelope, batch) of the sealed bytes ``data``, opened with the reader's own ``key``: the CID (when
    given), the envelope, the ciphertext, the batch format and every leaf against the signed header's Merkle
    root checked. Raises ``ProtocolError`` (or ``ValueError`` for a CID mismatch)."""
    computed = cid_for(data)
    if cid is not None and computed != cid:
        raise ValueError(f"the sealed bytes are {computed}, not {cid}")
    envelope = sealed_blob.parse(data)
    plaintext = sealed_blob.open_sealed(envelope, key)
    batch = decode_batch(plaintext)
    if batch.id != envelope.batch_id:
        raise sealed_blob.MalformedSealedBlob(f"envelope names batch {envelope.batch_id}, the blob is {batch.id}")
    if merkle.root(batch.leaf_hashes()) != batch.root:
        raise sealed_blob.OpenFailed("the leaves do not hash to the root in the signed header")
    return envelope, batch


def open_blob(data: bytes, key: Any, cid: str | None = None, gateway_key: bytes | None = None) -> dict[str, Any]:
    """The report of opening ``data``; raises ``ProtocolError`` (or ``ValueError`` for a CID mismatch)."""
    envelope, batch = open_batch(data, key, cid)
    report: dict[str, Any] = {
        "cid": cid_for(data),
        "cid_checked": cid is not None,
        "batch_id": batch.id,
        "recipients": len(envelope.recipients),
        "header": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in batch.header.items()},
        "leaves": len(batch.leaves),
        "merkle_root": "every leaf hashes to the signed header's root",
        "gateway_signature": "not checked (no --gateway-key)",
    }
    if gateway_key is not None:
        message = cose.parse_sign1(batch.signed_header)
        if not verify_es256(gateway_key, message.signed_bytes(), message.signature):
            raise sealed_blob.OpenFailed("the batch header signature does not verify under --gateway-key")
        report["gateway_signature"] = "verified"
    # a reader of the blob holds every opening: each aggregate is shown whole, each field checked against its
    # commitment
    opened = [views.leaf_content(leaf, batch.openings.get(i, {})) for i, leaf in enumerate(batch.leaves)]
    report["items"] = [{"kind": kind, **content} for kind, content in opened]
    return report


def open_blob_command(
    blob_file: Annotated[Path, typer.Argument(help="the sealed blob (raw bytes or hex), e.g. a file named by its CID")],
    key: Annotated[Path, typer.Option("--key", help="the reader's private key file (hex)")],
    cid: Annotated[
        str | None, typer.Option("--cid", help="the CID it must have (default: the file name, if it is a CID)")
    ] = None,
    gateway_key: Annotated[
        str | None, typer.Option("--gateway-key", help="also verify the header signature (130 hex characters)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="write the opened batch blob (plaintext CBOR) here")] = None,
) -> None:
    """Decrypt a sealed batch blob with a reader key and check its Merkle leaves against the signed header.

    Exit status: 0 opened and checked; 1 not a recipient, tampered or inconsistent; 2 unreadable input."""
    try:
        data = _read_blob(blob_file)
        reader = load_reader_key(key)
    except (OSError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    expected = cid if cid is not None else (blob_file.name if blob_file.name.startswith("bafk") else None)
    try:
        report = open_blob(data, reader, expected, bytes.fromhex(gateway_key) if gateway_key else None)
    except (ProtocolError, ValueError) as err:
        reason = getattr(err, "reason", "cid_mismatch")
        typer.echo(json.dumps({"status": "invalid", "reason": reason, "detail": str(err)}, indent=2))
        raise typer.Exit(EXIT_INVALID) from err
    if out is not None:
        out.write_bytes(sealed_blob.open_sealed(data, reader))
    typer.echo(json.dumps({"status": "opened", **report}, indent=2, default=str))
