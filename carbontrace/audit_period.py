"""`carbontrace audit-period`: a regulator decrypts and verifies every raw reading of an enterprise's period.

The regulator's own API key lists the period's batches (GET /enterprises/{id}/batches: CIDs and the evidence
anchoring them); each sealed blob is fetched, its CID recomputed and opened with the regulator's own reader key,
so the cloud decrypts nothing for it. The opened leaves then become the items of one proof bundle beside the
cloud's evidence, and the protocol core's verifier (carbontrace_protocol/proof_verify.py) checks them against the
chain: device keys and signatures, aggregate openings against their commitments, the batch Merkle root, the
gateway signature, the checkpoint, the log inclusion and the anchor. Which keys count is the chain's to say, not
the cloud's. Every batch is reported, verified or failed with its reason; none is skipped.

Exit status: 0 every batch verified; 1 some failure (or nothing to audit); 2 unusable input; 4 chain unreachable.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from carbontrace.open_blob import load_reader_key, open_batch
from carbontrace.verify_bundle import Web3ChainReader, load_trust
from carbontrace_protocol import bundle_wire, cose, merkle, views
from carbontrace_protocol.batch import Batch, parse_leaf
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.proof_bundle import (
    DEVICE_SIGNED_KINDS,
    BundleFormatError,
    ItemEntry,
    KeyEntry,
    ProofBundle,
    Query,
    Trust,
)
from carbontrace_protocol.proof_verify import (
    EXIT_CHAIN_UNREACHABLE,
    EXIT_USAGE,
    ChainReader,
    ChainUnreachable,
    Report,
    verify_bundle,
)
from carbontrace_protocol.verify import verify_es256
from carbontrace_protocol.views import ALL_TYPES, KIND_AGGREGATE, KIND_READING

EXIT_OK = 0
EXIT_FAILED = 1


class AuditFailure(Exception):
    """One batch cannot be audited: ``reason`` names the check (as a verifier step does), ``detail`` why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class BatchResult:
    batch_id: str
    cid: str
    status: str = "verified"  # verified | failed
    reason: str | None = None
    detail: str | None = None
    readings: list[dict[str, Any]] = field(default_factory=list)
    aggregates: int = 0

    def fail(self, reason: str, detail: str) -> None:
        if self.status != "failed":  # the first failure names the batch's reason
            self.status, self.reason, self.detail = "failed", reason, detail

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batch_id": self.batch_id, "cid": self.cid, "status": self.status}
        if self.status == "failed":
            out |= {"reason": self.reason, "detail": self.detail}
        return out | {"readings": len(self.readings), "aggregates": self.aggregates}


def _get_json(http: httpx.Client, path: str, reason: str = "cloud", **params: Any) -> Any:
    response = http.get(path, params=params)
    if response.status_code != 200:
        raise AuditFailure(reason, f"GET {path}: HTTP {response.status_code} {response.text[:200]}")
    return response.json()


def _fetch_blob(http: httpx.Client, listed: dict[str, Any]) -> bytes:
    answer = _get_json(http, f"/api/v1/batches/{listed['gateway_id']}/{listed['batch_seq']}/blob", "content_store")
    try:
        return bytes.fromhex(answer["blob"])
    except (KeyError, TypeError, ValueError) as err:
        raise AuditFailure("content_store", f"the blob answer is not hex: {err}") from err


def _open(data: bytes, reader_key: Any, listed: dict[str, Any], evidence: ProofBundle) -> Batch:
    """The batch opened with the regulator's key; its header the one the evidence anchors."""
    try:
        _, batch = open_batch(data, reader_key, listed["cid"])
    except ProtocolError as err:  # not a recipient, tampered, not a batch, leaves not under the signed root
        raise AuditFailure(err.reason, str(err)) from err
    except ValueError as err:  # the CID recomputed from the bytes received is not the listed one
        raise AuditFailure("content_store", str(err)) from err
    if batch.id != listed["batch_id"]:
        raise AuditFailure("batch_inclusion", f"the blob is batch {batch.id}, listed as {listed['batch_id']}")
    try:
        anchored = evidence.batch(batch.id)
    except KeyError:
        raise AuditFailure("log_inclusion", "the cloud's evidence holds no log entry for this batch") from None
    if anchored.signed_header != batch.signed_header:
        raise AuditFailure("batch_inclusion", "the blob's signed header is not the one the log holds")
    try:
        batch.aggregates()  # every opening against its salted commitment, each committed field opened
    except ProtocolError as err:
        raise AuditFailure("field_openings", str(err)) from err
    return batch


def _signing_key(leaf: bytes, device_id: str, device_keys: list[KeyEntry]) -> KeyEntry:
    """The device's key whose signature the reading carries (else its newest, so the verifier names the bad
    signature at its own step); whether that key counted is the chain's to say."""
    keys = [k for k in device_keys if k.signer == device_id]
    if not keys:
        raise AuditFailure("device_key", f"no key of device {device_id!r} is known")
    try:
        message = cose.parse_sign1(parse_leaf(leaf)[1])
    except ProtocolError as err:
        raise AuditFailure("device_signature", str(err)) from err
    signed = message.signed_bytes()
    return next((k for k in keys if verify_es256(k.public_key, signed, message.signature)), keys[-1])


def _items(batch: Batch, start: int, end: int, device_keys: list[KeyEntry]) -> list[tuple[ItemEntry, KeyEntry | None]]:
    """Every leaf of the batch in [start, end) as a proof-bundle item opening all its fields."""
    hashes = batch.leaf_hashes()
    out = []
    for index, leaf in enumerate(batch.leaves):
        openings = batch.openings.get(index, {})
        retimed = batch.retimed.get(index)  # (time, signed reference) of an unsynced reading
        try:
            kind, content = views.leaf_content(leaf, openings)
            if kind == KIND_READING and retimed is not None and content.get("timestamp") is None:
                # the blob's claimed time places the item; the verifier re-derives it from the signed
                # reference the item carries, and a claimed time it does not give fails the item's view
                content = {**content, "timestamp": retimed[0]}
            first, last = views.leaf_time(kind, content)
            device_id = views.leaf_device(kind, content)
        except (ProtocolError, ValueError) as err:
            raise AuditFailure("decoded_view", f"leaf {index}: {err}") from err
        if last <= start or first >= end:
            continue
        # a reading and a chamber flux are device-signed: their items name the key (proof_bundle.DEVICE_SIGNED_KINDS)
        key = _signing_key(leaf, device_id, device_keys) if kind in DEVICE_SIGNED_KINDS else None
        item = ItemEntry(
            kind,
            batch.id,
            index,
            device_id,
            key.fingerprint if key is not None else None,
            leaf,
            tuple(merkle.inclusion_proof(hashes, index)),
            views.view(kind, content, ALL_TYPES),
            tuple(sorted(openings.items())) if kind not in DEVICE_SIGNED_KINDS else (),
            retimed[1] if kind == KIND_READING and retimed is not None else None,
        )
        out.append((item, key))
    return out


def _bundle(
    evidence: ProofBundle, query: Query, items: list[tuple[ItemEntry, KeyEntry | None]], batch_ids: set[str]
) -> ProofBundle:
    """The cloud's evidence for ``batch_ids`` with the regulator's own items: what proof_verify checks."""
    batches = tuple(b for b in evidence.batches if b.batch_id in batch_ids)
    seqs = {b.checkpoint_seq for b in batches if b.checkpoint_seq is not None}
    used = {b.gateway_key for b in batches}
    keys = {k.fingerprint: k for k in evidence.keys if k.kind == "cloud" or k.fingerprint in used}
    keys |= {key.fingerprint: key for _, key in items if key is not None}
    return ProofBundle(
        chain_id=evidence.chain_id,
        registry=evidence.registry,
        query=query,
        newest=evidence.newest if seqs else None,
        keys=tuple(keys[fp] for fp in sorted(keys)),
        checkpoints=tuple(c for c in evidence.checkpoints if c.seq in seqs),
        batches=batches,
        items=tuple(item for item, _ in items),
        retrieval_failures=(),
    )


def _apply(report: Report, results: dict[str, BatchResult], opened: dict[str, Batch]) -> None:
    """Each verified item's verdict onto its batch; a batch-level failure onto every batch."""
    if report.status == "invalid" and not report.items:
        for result in results.values():
            if result.batch_id in opened:
                result.fail(report.failed_step or "invalid", report.detail)
        return
    for item in report.items:
        result = results[item.batch_id]
        if item.status == "invalid":
            detail = next((s.detail for s in item.steps if s.ok is False), "")
            result.fail(item.failed_step or "invalid", f"leaf {item.leaf_index}: {detail}")
        elif item.status == "pending":
            result.fail("chain_anchor", "the batch is not under a checkpoint anchored on chain yet")


def _chain_breaks(listed: list[dict[str, Any]], opened: dict[str, Batch]) -> dict[str, str]:
    """Batch id → why the gateway's batch chain breaks before it inside the listing: a sequence number left
    out (the cloud may not drop a batch from the middle of a period unseen), or a header whose ``prev`` is not
    the hash of the batch before it."""
    breaks: dict[str, str] = {}
    by_gateway: dict[str, list[dict[str, Any]]] = {}
    for entry in listed:
        by_gateway.setdefault(entry["gateway_id"], []).append(entry)
    for entries in by_gateway.values():
        entries.sort(key=lambda e: int(e["batch_seq"]))
        for before, after in itertools.pairwise(entries):
            first, then = opened.get(before["batch_id"]), opened.get(after["batch_id"])
            if int(after["batch_seq"]) != int(before["batch_seq"]) + 1:
                breaks[after["batch_id"]] = f"batches after {before['batch_id']} are missing from the listing"
            elif first is not None and then is not None and then.header["prev"] != first.hash:
                breaks[after["batch_id"]] = f"its prev is not the hash of {before['batch_id']}"
    return breaks


def audit_period(
    http: httpx.Client, chain: ChainReader, trust: Trust, reader_key: Any, enterprise_id: str, start: int, end: int
) -> dict[str, Any]:
    """The audit report of [start, end); ``http`` carries the regulator's API key. Raises ChainUnreachable."""
    listing = _get_json(http, f"/api/v1/enterprises/{enterprise_id}/batches", start=start, end=end)
    try:
        evidence = ProofBundle.from_json(listing["evidence"])
        device_keys = [KeyEntry.read(k, bundle_wire.JSON) for k in listing["device_keys"]]
    except (KeyError, TypeError, BundleFormatError) as err:
        raise AuditFailure("bundle_format", f"the cloud's evidence is malformed: {err}") from err
    results: dict[str, BatchResult] = {}
    opened: dict[str, Batch] = {}
    items: list[tuple[ItemEntry, KeyEntry | None]] = []
    for listed in listing["batches"]:
        result = results.setdefault(listed["batch_id"], BatchResult(listed["batch_id"], listed["cid"]))
        try:
            batch = _open(_fetch_blob(http, listed), reader_key, listed, evidence)
            batch_items = _items(batch, start, end, device_keys)
        except AuditFailure as failure:
            result.fail(failure.reason, failure.detail)
            continue
        opened[batch.id] = batch
        items += batch_items
    for batch_id, detail in _chain_breaks(listing["batches"], opened).items():
        results[batch_id].fail("batch_chain", detail)
    if opened:
        query = Query(enterprise_id, None, None, start, end, ALL_TYPES, max(1, len(items)))
        _apply(verify_bundle(_bundle(evidence, query, items, set(opened)), chain, trust), results, opened)
    for item, _ in items:
        result = results[item.batch_id]
        if item.kind == KIND_READING:
            result.readings.append({"batch_id": item.batch_id, "leaf_index": item.leaf_index, **item.view})
        elif item.kind == KIND_AGGREGATE:  # a chamber flux item is verified with the rest, not counted here
            result.aggregates += 1
    failed = [r for r in results.values() if r.status == "failed"]
    verified = [r for r in results.values() if r.status == "verified"]
    return {
        "status": "failed" if failed or not results else "verified",
        "enterprise_id": enterprise_id,
        "period": [start, end],
        "batches": len(results),
        "batches_failed": len(failed),
        "readings_verified": sum(len(r.readings) for r in verified),
        "aggregates_verified": sum(r.aggregates for r in verified),
        "failures": [r.as_json() for r in failed],
        "batch_results": [r.as_json() for r in results.values()],
        "readings": [reading for r in verified for reading in r.readings],
    }


def audit_period_command(
    cloud: Annotated[str, typer.Option("--cloud", help="the cloud's URL")],
    api_key_file: Annotated[Path, typer.Option("--api-key-file", help="the regulator's API key file")],
    reader_key: Annotated[Path, typer.Option("--reader-key", help="the regulator's reader private key file (hex)")],
    enterprise: Annotated[str, typer.Option("--enterprise", help="the enterprise to audit")],
    start: Annotated[int, typer.Option("--start", help="period start, unix seconds (inclusive)")],
    end: Annotated[int, typer.Option("--end", help="period end, unix seconds (exclusive)")],
    trust_file: Annotated[
        Path | None, typer.Option("--trust", help="pinned trust file (default: the cloud's /api/v1/trust, unpinned)")
    ] = None,
    rpc: Annotated[
        str | None, typer.Option("--rpc", help="JSON-RPC URL of the chain (default: the cloud's /rpc)")
    ] = None,
) -> None:
    """Decrypt and verify every reading of an enterprise's period with the regulator's own keys.

    Exit status: 0 every batch verified; 1 a batch failed (each is listed with its reason) or nothing to audit;
    2 unusable input; 4 chain unreachable."""
    base = cloud.rstrip("/")
    try:
        api_key = api_key_file.read_text().strip()
        key = load_reader_key(reader_key)
        trust = load_trust(trust_file, None, None) if trust_file is not None else None
    except (OSError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as http:
        try:
            if trust is None:
                trust = Trust.from_json(_get_json(http, "/api/v1/trust"))
            chain = Web3ChainReader.over_http(rpc or f"{base}/rpc", trust.registry)
            report = audit_period(http, chain, trust, key, enterprise, start, end)
        except AuditFailure as failure:
            typer.echo(json.dumps({"status": "failed", "reason": failure.reason, "detail": failure.detail}, indent=2))
            raise typer.Exit(EXIT_FAILED) from failure
        except ChainUnreachable as err:
            typer.echo(f"error: chain unreachable: {err}", err=True)
            raise typer.Exit(EXIT_CHAIN_UNREACHABLE) from err
    report["trust"] = "pinned (--trust)" if trust_file is not None else "the cloud's own /api/v1/trust (not pinned)"
    typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(EXIT_OK if report["status"] == "verified" else EXIT_FAILED)
