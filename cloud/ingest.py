"""Batch ingestion: re-verify everything against our own registry and history, then store it in one transaction.

Order of work: decode → (same batch again? same receipt) → gateway signature → per-gateway order (prev-hash
chain) → every device signature, the root, every aggregate, replayed readings → blob sealed to its readers
(cloud/blob_readers.py) and into the content store (content-addressed, so a crash leaves at most an
unreferenced blob) → one DB transaction: batch, readings, aggregates, one log leaf.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from carbontrace_protocol import batch as batchlib
from carbontrace_protocol import cbor, cose
from carbontrace_protocol.attribution import measured_span
from carbontrace_protocol.batch_verify import (
    BatchRejected,
    VerifiedBatch,
    VerifiedReading,
    verify_batch,
)
from carbontrace_protocol.emission_factors import EmissionFactor
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.factor_rule import NoFactor, activity_year
from carbontrace_protocol.measures import measures_of
from carbontrace_protocol.verify import verify_es256
from cloud import models
from cloud.blob_readers import BlobSealer
from cloud.content_store import ContentStore
from cloud.ledger_log import SqlLog
from cloud.signer_keys import DEVICE, GATEWAY, SignerKindName, keys_of
from cloud.site_factors import factor_for, location_of


class NotYourGateway(Exception):
    """The batch names a gateway other than the key's."""


def last_batch(session: Session, gateway_id: str) -> tuple[int, bytes] | None:
    """(batch_seq, batch_hash) of the gateway's last accepted batch: what its next batch must follow."""
    row = session.execute(
        select(models.Batch.batch_seq, models.Batch.batch_hash)
        .where(models.Batch.gateway_id == gateway_id)
        .order_by(models.Batch.batch_seq.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


class OutOfOrder(Exception):
    def __init__(self, expected_batch_seq: int, detail: str) -> None:
        super().__init__(detail)
        self.expected_batch_seq = expected_batch_seq
        self.detail = detail


def receipt_of(row: models.Batch, quarantined: int = 0) -> dict[str, Any]:
    """The answer to an accepted upload; ``quarantined`` counts its kept-but-not-counted reading leaves."""
    return {
        "batch_id": row.id,
        "batch_hash": row.batch_hash.hex(),
        "cid": row.cid,
        "log_index": row.log_index,
        "leaves": row.leaves,
        "readings": row.readings,
        "quarantined": quarantined,
        "status": "accepted",
    }


def quarantined_readings(session: Session, batch_id: str) -> int:
    return len(
        session.scalars(
            select(models.QuarantinedLeaf.leaf_index).where(
                models.QuarantinedLeaf.batch_id == batch_id, models.QuarantinedLeaf.kind == "reading"
            )
        ).all()
    )


def _decimal_mantissa(value: Any) -> int | None:
    if isinstance(value, cbor.Tag) and isinstance(value.value, list) and len(value.value) == 2:
        return int(value.value[1])
    return None


def revoked_key_that_signed(
    session: Session, kind: SignerKindName, signer_id: str, signed_bytes: bytes, signature: bytes
) -> models.SignerKey | None:
    """The signer's revoked (rotated-out) key under which ``signature`` verifies, if any: used only to name the
    reason of a rejection, after the current key failed (a gateway's header; a device's reading is quarantined
    instead, see ``rotated_out`` in ``_verify``)."""
    for key in keys_of(session, kind, signer_id):
        if key.revoked_at is not None and verify_es256(key.public_key, signed_bytes, signature):
            return key
    return None


def _rotated_out(what: str, key: models.SignerKey) -> str:
    return (
        f"signed with {what}'s key {key.fingerprint.hex()}, revoked at {key.revoked_at} (rotated out or revoked); "
        "only its current key counts"
    )


class Ingestor:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        store: ContentStore,
        sealer: BlobSealer,
        read_session_factory: sessionmaker[Session] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session_factory = session_factory
        self.read_session_factory = read_session_factory or session_factory
        self.store = store
        self.sealer = sealer
        self.clock = clock

    def ingest(self, gateway_id: str, blob: bytes, sealed: bytes | None = None) -> tuple[bool, dict[str, Any]]:
        """(created, receipt). Raises BatchRejected (422), OutOfOrder (409) or NotYourGateway (403).

        ``sealed``: the batch's sealed blob as this cloud stored it before, already opened to ``blob`` (recovery
        from the chain, cloud/chain_recovery.py): kept as it is, so the batch keeps the cid its checkpoint
        lists, instead of being sealed anew."""
        try:
            batch = batchlib.decode_batch(blob)
        except ProtocolError as err:
            raise BatchRejected(getattr(err, "reason", "malformed_batch"), str(err)) from err
        if batch.header["gateway"] != gateway_id:
            raise NotYourGateway()
        blob_sha = hashlib.sha256(blob).digest()
        for _attempt in range(3):
            with self.read_session_factory() as session:
                existing = session.get(models.Batch, batch.id)
                if existing is not None and existing.blob_sha256 == blob_sha:
                    return False, receipt_of(existing, quarantined_readings(session, existing.id))
                try:
                    verified = self._verify(session, gateway_id, batch)
                except (BatchRejected, OutOfOrder):
                    # Another process (scale-out) may have stored this very batch since the look above: its
                    # readings then read as replayed and its seq as taken. The same upload answers as a duplicate.
                    stored = self._stored_copy(batch.id, blob_sha)
                    if stored is not None:
                        return False, stored
                    raise
            try:
                return True, self._store(gateway_id, batch, verified, blob, blob_sha, sealed)
            except IntegrityError:
                continue  # a concurrent upload won a race: look again (idempotent answer or 409)
        raise OutOfOrder(self._expected_seq(gateway_id), "concurrent uploads of this gateway keep colliding")

    def _stored_copy(self, batch_id: str, blob_sha: bytes) -> dict[str, Any] | None:
        """The receipt of this exact batch if it is stored now (a fresh session: the committed state)."""
        with self.session_factory() as session:
            existing = session.get(models.Batch, batch_id)
            if existing is None or existing.blob_sha256 != blob_sha:
                return None
            return receipt_of(existing, quarantined_readings(session, existing.id))

    def _verify(self, session: Session, gateway_id: str, batch: batchlib.Batch) -> VerifiedBatch:
        gateway = session.get(models.Gateway, gateway_id)
        if gateway is None:
            raise NotYourGateway()
        if gateway.status != "active":
            raise BatchRejected("gateway_revoked", f"the key of gateway {gateway_id} is revoked (on chain and here)")
        site = session.get(models.Site, gateway.site_id)
        assert site is not None
        devices = list(session.scalars(select(models.Device).where(models.Device.site_id == site.id)))
        keys = {device.id: device.public_key for device in devices if device.status == "active"}
        # A device revoked while its readings sat in the gateway's open window: those readings are quarantined
        # (kept, not counted) instead of failing the whole batch and halting the site's uploads.
        revoked = {device.id: device.public_key for device in devices if device.status == "revoked"}

        def rotated_out(device_id: str) -> list[bytes]:
            # An active device's keys before its current one: a reading signed with one was in flight when the
            # key rotated, so it is quarantined (kept, not counted) rather than halting the site's uploads.
            if device_id not in keys:
                return []
            return [k.public_key for k in keys_of(session, DEVICE, device_id) if k.revoked_at is not None]

        def factor(factor_id: str) -> EmissionFactor | None:
            # The only factor allowed is the catalogue rule's for this site and the window's year, today.
            try:
                wanted = factor_for(site, int(batch.header["window"][0]))
            except NoFactor as err:
                raise BatchRejected("bad_emission_factor", f"site {site.id}: {err}") from err
            if factor_id != wanted.id:
                raise BatchRejected(
                    "bad_emission_factor",
                    f"site {site.id} at {location_of(site).describe()}, activity year "
                    f"{activity_year(int(batch.header['window'][0]))}: the catalogue rule gives factor {wanted.id}, "
                    f"the aggregate uses {factor_id!r} (refresh the gateway's registry)",
                )
            return wanted

        def baseline(device_id: str) -> tuple[int, int, int | None] | None:
            row = session.get(models.EnergyBaseline, (gateway_id, device_id))
            if row is None:
                return None
            return int(row.seq), int(row.energy_wh), None if row.timestamp is None else int(row.timestamp)

        # Order before content: aggregates are relative to the batches before this one, so a batch after
        # a gap cannot be judged yet (409 lets the gateway send the missing one). Only an authentic header
        # gets that far, so nobody learns a gateway's position without its key.
        message = cose.parse_sign1(batch.signed_header)
        if not verify_es256(gateway.public_key, message.signed_bytes(), message.signature):
            old = revoked_key_that_signed(session, GATEWAY, gateway_id, message.signed_bytes(), message.signature)
            if old is not None:
                raise BatchRejected("revoked_gateway_key", "batch header " + _rotated_out(f"gateway {gateway_id}", old))
            raise BatchRejected("bad_gateway_signature", "gateway signature on the batch header does not verify")
        self._check_order(session, gateway_id, batch)
        try:
            verified = verify_batch(batch, gateway.public_key, keys.get, factor, baseline, revoked.get, rotated_out)
        except BatchRejected as err:
            explained = self._explain_bad_reading_signature(session, batch, err)
            if explained is err:
                raise
            raise explained from err
        if batch.header["site"] != site.id:
            raise BatchRejected("wrong_site", "batch names a site other than its gateway's")
        self._check_replay(session, verified)
        return verified

    @staticmethod
    def _explain_bad_reading_signature(session: Session, batch: batchlib.Batch, err: BatchRejected) -> BatchRejected:
        """``revoked_device_key`` instead of ``bad_signature`` when the reading verifies under a key its device
        had before (a reading signed after, or in flight during, a key rotation); otherwise ``err`` itself."""
        if err.reason != "bad_signature" or err.leaf_index is None:
            return err
        try:
            _kind, body = batchlib.parse_leaf(batch.leaves[err.leaf_index])
            message = cose.parse_sign1(body)
            device_id = message.kid.decode()
        except (ProtocolError, UnicodeError, IndexError):
            return err
        old = revoked_key_that_signed(session, DEVICE, device_id, message.signed_bytes(), message.signature)
        if old is None:
            return err
        detail = "reading " + _rotated_out(f"device {device_id}", old)
        return BatchRejected("revoked_device_key", detail, err.leaf_index)

    def _check_replay(self, session: Session, verified: VerifiedBatch) -> None:
        by_device: dict[str, dict[int, int]] = {}
        for item in verified.readings:
            by_device.setdefault(item.reading.device_id, {})[item.reading.seq] = item.leaf_index
        if not by_device:
            return
        conditions = [
            and_(models.Reading.device_id == device, models.Reading.seq.between(min(seqs), max(seqs)))
            for device, seqs in by_device.items()
        ]
        for device, seq in session.execute(
            select(models.Reading.device_id, models.Reading.seq).where(or_(*conditions))
        ):
            if seq in by_device[device]:
                raise BatchRejected(
                    "replayed_reading", f"{device} seq {seq} was accepted in an earlier batch", by_device[device][seq]
                )

    def _expected_seq(self, gateway_id: str) -> int:
        with self.read_session_factory() as session:
            last = last_batch(session, gateway_id)
        return 0 if last is None else last[0] + 1

    def _check_order(self, session: Session, gateway_id: str, batch: batchlib.Batch) -> None:
        last = last_batch(session, gateway_id)
        seq, prev = batch.header["batch_seq"], batch.header["prev"]
        if last is None:
            if prev != batchlib.ZERO_HASH:
                raise OutOfOrder(0, "no batch of this gateway was accepted yet: the first batch's prev must be zero")
            return
        expected = int(last[0]) + 1
        if seq != expected:
            raise OutOfOrder(expected, f"batch_seq {seq} does not follow the last accepted {expected - 1}")
        if prev != last[1]:
            raise OutOfOrder(expected, "prev is not the hash of the last accepted batch of this gateway")

    def _store(
        self, gateway_id: str, batch: batchlib.Batch, verified: VerifiedBatch, blob: bytes, blob_sha: bytes,
        sealed: bytes | None = None,
    ) -> dict[str, Any]:
        # Sealed before it reaches the content store or IPFS: the CID names the sealed bytes.
        if sealed is None:
            with self.read_session_factory() as session:
                sealed = self.sealer.seal(session, batch.header["site"], batch.id, blob)
        cid, pinned = self.store.put(sealed)
        now = int(self.clock())
        header = batch.header
        with self.session_factory.begin() as session:
            log = SqlLog(session)
            log_index = log.append(batch.signed_header)  # takes the log lock first: appends serialize here
            if session.get(models.Batch, batch.id) is not None:
                raise IntegrityError("batch exists", None, Exception("duplicate batch id"))
            self._check_order(session, gateway_id, batch)
            blob_row = session.get(models.Blob, cid)
            if blob_row is None:
                session.add(models.Blob(cid=cid, size=len(sealed), kind="batch", pinned=pinned, created_at=now))
                session.flush()  # no ORM relationships, so rows referencing it must follow explicitly
            row = models.Batch(
                id=batch.id,
                gateway_id=gateway_id,
                site_id=header["site"],
                batch_seq=header["batch_seq"],
                batch_hash=batch.hash,
                prev_hash=header["prev"],
                root=batch.root,
                blob_sha256=blob_sha,
                signed_header=batch.signed_header,
                cid=cid,
                window_start=header["window"][0],
                window_end=header["window"][1],
                leaves=len(batch.leaves),
                readings=header["readings"],
                log_index=log_index,
                received_at=now,
            )
            session.add(row)
            session.flush()
            # Rows are many (a reading, an aggregate per device per window): one multi-row INSERT per table
            # (executemany), not an ORM object and a flush per row.
            _move_energy_baselines(session, gateway_id, verified.readings)
            quarantined = [r for r in verified.readings if r.quarantine is not None]
            _insert_many(session, models.QuarantinedLeaf, [
                {"batch_id": batch.id, "leaf_index": r.leaf_index, "kind": "reading", "device_id": r.reading.device_id,
                 "seq": r.reading.seq, "reason": r.quarantine, "quarantined_at": now}
                for r in quarantined
            ] + [
                {"batch_id": batch.id, "leaf_index": leaf_index, "kind": "aggregate", "device_id": agg["device"],
                 "seq": None, "reason": verified.quarantine_reasons[agg["device"]], "quarantined_at": now}
                for leaf_index, agg in verified.quarantined_aggregates
            ] + [
                {"batch_id": batch.id, "leaf_index": f.leaf_index, "kind": "flux", "device_id": f.flux.device_id,
                 "seq": f.flux.seq[0], "reason": f.quarantine, "quarantined_at": now}
                for f in verified.fluxes if f.quarantine is not None
            ])
            _insert_many(session, models.Reading, [
                {
                    "device_id": r.reading.device_id,
                    "seq": r.reading.seq,
                    "timestamp": r.timestamp,  # an unsynced reading's re-derived from its signed reference
                    "flags": r.reading.flags,
                    "measures": measures_of(r.reading),
                    "batch_id": batch.id,
                    "leaf_index": r.leaf_index,
                }
                for r in verified.counted_readings
            ])
            _insert_many(session, models.Aggregate, [
                _aggregate_row(batch, leaf_index, agg) for leaf_index, agg in verified.counted_aggregates
            ])
            # chamber fluxes: indexed like readings (where the signed leaf is), their figures stay in the blob
            _insert_many(session, models.Flux, [
                {"batch_id": batch.id, "leaf_index": f.leaf_index, "device_id": f.flux.device_id,
                 "first_seq": f.flux.seq[0], "last_seq": f.flux.seq[1], "session_start": f.flux.session[0],
                 "session_end": f.flux.session[1], "qa": f.flux.qa}
                for f in verified.fluxes if f.quarantine is None
            ])
            return receipt_of(row, len(quarantined))


def _insert_many(session: Session, model: type[models.Base], rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(model), rows)


def _aggregate_row(batch: batchlib.Batch, leaf_index: int, agg: dict[str, Any]) -> dict[str, Any]:
    energy = agg.get("energy")
    factor = agg.get("factor")
    span = measured_span(energy) or (agg["window"][0], agg["window"][1])
    return {
        "batch_id": batch.id,
        "device_id": agg["device"],
        "leaf_index": leaf_index,
        "window_start": agg["window"][0],
        "window_end": agg["window"][1],
        "received": agg["received"],
        "delta_wh": energy["delta_wh"] if isinstance(energy, dict) else None,
        "emissions_g_e4": _decimal_mantissa(agg.get("emissions_g")),
        "factor_id": factor["id"] if isinstance(factor, dict) else None,
        "leaf": batch.leaves[leaf_index],
        "span_start": min(agg["window"][0], span[0]),
        "span_end": max(agg["window"][1], span[1]),
    }


def _move_energy_baselines(session: Session, gateway_id: str, readings: list[VerifiedReading]) -> None:
    """Each device's baseline moves to its highest-sequence reading with energy in this batch, counted or
    quarantined (the gateway's moves past both)."""
    last: dict[str, tuple[int, int, int]] = {}
    for r in readings:
        energy = r.reading.energy_wh
        if energy is not None and r.reading.seq > last.get(r.reading.device_id, (-1, 0, 0))[0]:
            last[r.reading.device_id] = (r.reading.seq, energy, r.timestamp)
    for device_id, (seq, energy, measured_at) in last.items():
        row = session.get(models.EnergyBaseline, (gateway_id, device_id))
        if row is None:
            session.add(models.EnergyBaseline(gateway_id=gateway_id, device_id=device_id, seq=seq, energy_wh=energy,
                                              timestamp=measured_at))
        elif seq > row.seq:
            row.seq, row.energy_wh, row.timestamp = seq, energy, measured_at
