"""The durable spool: one SQLite file (WAL, synchronous=FULL) holding everything the gateway must not lose.

Accepted readings are committed here before their MQTT ack; a batch is sealed in one transaction that
writes the batch row with its blob, marks its readings and moves the energy baselines on; a batch stays
until the cloud's receipt is stored. Each thread opens its own ``Spool`` on the same file.

A reading taken before its device's first time sync (format 2, no wall time) is held (table ``held``) until a
synced reading of the same device and boot arrives (its first one is kept in ``boot_refs``); it is then
re-timed (carbontrace_protocol/retime.py) into the window of its re-timed time (or the first open one), with
its evidence (``retimed``: the time and the reference's signed bytes) for the batch. One that cannot be
re-timed, or whose reference has not come within the timeout (``expire_held``), stays in ``held`` with its
reason, counted as a rejection, and is never uploaded.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbontrace_host.secret_files import private_database
from carbontrace_protocol.batch import ZERO_HASH, Baseline, Batch, decode_batch
from carbontrace_protocol.reading import Reading
from carbontrace_protocol.retime import TIMEOUT, RetimeRejected, is_reference, retimed_timestamp
from carbontrace_protocol.verify import unverified_reading
from edge_gateway.classify import DeviceEntry, Rejected, Verified, VerifiedFlux
from edge_gateway.sequence import ACCEPT, DUPLICATE, SeqState, decide, split_gap
from edge_gateway.windows import assign_window

# readings.batch_seq of a dead letter's readings: DEAD_LETTER_SEQ - dead_id, far below the negative numbers a
# resync uses for a moment (-1 - batch_seq), so no renumbering ever touches them.
DEAD_LETTER_SEQ = -(10**15)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registry (
    device_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, digest BLOB NOT NULL, cose BLOB,
    timestamp INTEGER NOT NULL, received_at INTEGER NOT NULL, window_start INTEGER NOT NULL,
    batch_seq INTEGER, PRIMARY KEY (device_id, seq));
CREATE INDEX IF NOT EXISTS readings_open ON readings (window_start) WHERE batch_seq IS NULL;
CREATE INDEX IF NOT EXISTS readings_batch ON readings (batch_seq);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, max_seq INTEGER NOT NULL,
    accepted INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS gaps (
    device_id TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, detected_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, lo));
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY, batch_id TEXT NOT NULL, window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL, blob BLOB, hash BLOB NOT NULL, created INTEGER NOT NULL,
    readings INTEGER NOT NULL, acked_at INTEGER, receipt TEXT);
CREATE TABLE IF NOT EXISTS baselines (
    device_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, energy_wh INTEGER NOT NULL, timestamp INTEGER);
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_id INTEGER PRIMARY KEY AUTOINCREMENT, batch_seq INTEGER NOT NULL, batch_id TEXT NOT NULL,
    window_start INTEGER NOT NULL, window_end INTEGER NOT NULL, blob BLOB, hash BLOB NOT NULL,
    created INTEGER NOT NULL, readings INTEGER NOT NULL, reason TEXT NOT NULL, skipped_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS held (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, digest BLOB NOT NULL, cose BLOB NOT NULL, boot INTEGER NOT NULL,
    up INTEGER NOT NULL, received_at INTEGER NOT NULL, rejected TEXT, PRIMARY KEY (device_id, seq));
CREATE INDEX IF NOT EXISTS held_waiting ON held (device_id, boot) WHERE rejected IS NULL;
CREATE TABLE IF NOT EXISTS boot_refs (
    device_id TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL, cose BLOB NOT NULL,
    PRIMARY KEY (device_id, boot));
CREATE TABLE IF NOT EXISTS retimed (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, timestamp INTEGER NOT NULL, reference BLOB NOT NULL,
    PRIMARY KEY (device_id, seq));
CREATE TABLE IF NOT EXISTS fluxes (
    device_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, digest BLOB NOT NULL,
    cose BLOB, session_start INTEGER NOT NULL, session_end INTEGER NOT NULL, received_at INTEGER NOT NULL,
    window_start INTEGER NOT NULL, batch_seq INTEGER, PRIMARY KEY (device_id, first_seq));
CREATE TABLE IF NOT EXISTS rejections (
    device_label TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL, last_at INTEGER NOT NULL,
    PRIMARY KEY (device_label, reason));
"""


class SpoolError(Exception):
    """The spool cannot take more data; nothing accepted before is lost, new readings are not acked."""

    reason = "spool_error"


class SpoolOverLimit(SpoolError):
    reason = "spool_over_limit"


class SpoolFull(SpoolError):
    reason = "spool_disk_full"


@dataclass
class IngestResult:
    accepted: list[tuple[str, int]] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    new_gaps: list[tuple[str, int, int]] = field(default_factory=list)
    filled: list[tuple[str, int]] = field(default_factory=list)
    retimed: list[tuple[str, int]] = field(default_factory=list)  # held unsynced readings placed in a window
    fluxes_accepted: list[tuple[str, int]] = field(default_factory=list)  # (device, first sample seq)
    flux_duplicates: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class OpenReading:
    device_id: str
    seq: int
    signed: bytes
    retimed: tuple[int, bytes] | None = None  # (re-timed time, signed reference) of an unsynced reading


@dataclass(frozen=True)
class PendingBatch:
    batch_seq: int
    batch_id: str
    blob: bytes
    hash: bytes
    created: int


def decode_signed_reading(signed: bytes) -> Reading:
    """The reading inside bytes the gateway verified at ingest (not re-verified; the fast decode path, as at
    ingest: the pure one was a fifth of the gateway's CPU under load, docs/benchmarks.md)."""
    return unverified_reading(signed)


# rebase(skipped batch, the unacknowledged batches after it) -> (them rebuilt, the moved devices' baselines)
Rebase = Callable[[Batch, list[Batch]], tuple[list[Batch], dict[str, "Baseline | None"]]]
# build(window_start, open readings, baselines, batch_seq, prev_hash, open signed fluxes) -> (batch, moved baselines)
BatchBuilder = Callable[
    [int, list[OpenReading], dict[str, Baseline], int, bytes, list[bytes]], "tuple[Batch, dict[str, Baseline]]"
]


BYTE_LIMIT_META = "byte_limit_set"  # meta key of the limit `carbontrace gateway spool set-limit` chose


class Spool:
    def __init__(
        self,
        path: Path | str,
        max_bytes: int | None = None,
        max_page_count: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self.max_bytes = max_bytes
        self.clock = clock
        # The spool holds readings and the batch chain: 0600 (with its -wal/-shm) in 0700, before SQLite opens it.
        private_database(self.path)
        self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        with self._write():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(baselines)")}
            if "timestamp" not in columns:  # a spool from before attribution: its baselines have no time
                self.db.execute("ALTER TABLE baselines ADD COLUMN timestamp INTEGER")
        if max_page_count is not None:
            # A hard ceiling on the file: SQLite then fails writes with SQLITE_FULL exactly like a full disk.
            self.db.execute(f"PRAGMA max_page_count={int(max_page_count)}")

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise self._translate(err) from err
        try:
            yield
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as err:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise self._translate(err) from err

    def _translate(self, err: sqlite3.Error) -> Exception:
        if "full" in str(err).lower():
            return SpoolFull(f"spool {self.path}: {err} — new readings are not acked until space is freed")
        return err

    def held_bytes(self) -> int:
        """Bytes of readings and batch blobs not yet acknowledged by the cloud: what the byte limit bounds.

        Pruned space inside SQLite pages is reused by later writes, so this (not the file size, which
        never shrinks without VACUUM) is what grows while the cloud is away.
        """
        return int(self._meta("held_bytes", "0") or 0)

    def _add_held(self, delta: int) -> None:
        self._set_meta("held_bytes", str(self.held_bytes() + delta))

    def file_bytes(self) -> int:
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def byte_limit(self) -> int | None:
        """spool_max_bytes, unless `carbontrace gateway spool set-limit` set another: that one is kept in the
        spool itself, so a running gateway obeys it at its next ingest attempt and after restarts."""
        chosen = self._meta(BYTE_LIMIT_META)
        return int(chosen) if chosen is not None else self.max_bytes

    def set_byte_limit(self, limit: int | None) -> None:
        """Set the limit byte_limit() answers; None goes back to spool_max_bytes."""
        if limit is None:
            self.delete_meta(BYTE_LIMIT_META)
        else:
            self.set_meta(BYTE_LIMIT_META, str(int(limit)))

    def over_limit(self) -> bool:
        limit = self.byte_limit()
        return limit is not None and self.held_bytes() > limit

    def out_of_space(self, min_free_bytes: int = 1 << 20) -> bool:
        """Whether writes fail (or are about to) with SQLITE_FULL: the page ceiling reached with no free page
        left in the file, or less than ``min_free_bytes`` left on its filesystem."""
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        ceiling = int(self.db.execute("PRAGMA max_page_count").fetchone()[0])
        free_pages = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        if pages >= ceiling and free_pages == 0:
            return True
        return shutil.disk_usage(Path(self.path).parent).free < min_free_bytes

    # -- meta ---------------------------------------------------------------------------------------

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def get_meta(self, key: str) -> str | None:
        return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._write():
            self._set_meta(key, value)

    def delete_meta(self, key: str) -> None:
        with self._write():
            self.db.execute("DELETE FROM meta WHERE key=?", (key,))

    # -- registry -----------------------------------------------------------------------------------

    def replace_registry(self, entries: Sequence[DeviceEntry], site_id: str, factor_id: str | None) -> None:
        with self._write():
            self.db.execute("DELETE FROM registry")
            self.db.executemany(
                "INSERT INTO registry(device_id, public_key, status) VALUES (?, ?, ?)",
                [(e.device_id, e.public_key, e.status) for e in entries],
            )
            self._set_meta("registry_site", site_id)
            if factor_id is not None:
                self._set_meta("emission_factor", factor_id)
            self._set_meta("registry_synced_at", str(int(self.clock())))
            version = int(self._meta("registry_version", "0") or 0) + 1
            self._set_meta("registry_version", str(version))

    def registry(self) -> dict[str, DeviceEntry]:
        rows = self.db.execute("SELECT device_id, public_key, status FROM registry").fetchall()
        return {r[0]: DeviceEntry(r[0], bytes(r[1]), r[2]) for r in rows}

    def registry_version(self) -> int:
        return int(self._meta("registry_version", "0") or 0)

    # -- ingest -------------------------------------------------------------------------------------

    def ingest(self, verified: Sequence[Verified], rejected: Sequence[Rejected], window_s: int,
               parallel_workers: bool = False, fluxes: Sequence[VerifiedFlux] = ()) -> IngestResult:
        """Store accepted readings and count rejections in ONE transaction; the caller acks after it returns.
        ``parallel_workers``: several ingest processes commit into this spool, so a device's readings may be
        committed out of order (edge_gateway/sequence.py: the provisional first number)."""
        if (verified or fluxes) and self.over_limit():
            raise SpoolOverLimit(
                f"spool {self.path} holds {self.held_bytes()} bytes, over the limit of {self.byte_limit()}: "
                "new readings are left unacked on the broker until uploads free space"
            )
        result = IngestResult()
        try:
            with self._write():
                now = int(self.clock())
                closed_until = int(self._meta("closed_until", "0") or 0)
                window = assign_window(now, window_s, closed_until)
                held = 0
                for item in verified:
                    held += self._ingest_one(item, now, window, result, window_s, closed_until, parallel_workers)
                for flux_item in fluxes:
                    held += self._ingest_flux(flux_item, now, window, result)
                if held:
                    self._add_held(held)
                for rejection in [*rejected, *result.rejected]:
                    self.db.execute(
                        "INSERT INTO rejections(device_label, reason, count, last_at) VALUES (?, ?, 1, ?) "
                        "ON CONFLICT(device_label, reason) DO UPDATE SET count=count+1, last_at=excluded.last_at",
                        (rejection.device_label, rejection.reason, now),
                    )
        except sqlite3.OperationalError as err:
            raise self._translate(err) from err
        return result

    def _ingest_one(
        self, item: Verified, now: int, window: int, result: IngestResult, window_s: int, closed_until: int,
        parallel_workers: bool = False,
    ) -> int:
        """Decide and store one verified reading; returns the bytes it added to the spool."""
        device, seq = item.reading.device_id, item.reading.seq
        row = self.db.execute(
            "SELECT digest FROM readings WHERE device_id=? AND seq=? UNION ALL "
            "SELECT digest FROM held WHERE device_id=? AND seq=?", (device, seq, device, seq)).fetchone()
        stored = bytes(row[0]) if row else None
        srow = self.db.execute("SELECT first_seq, max_seq FROM devices WHERE device_id=?", (device,)).fetchone()
        state = SeqState(int(srow[0]), int(srow[1])) if srow else None
        gap_row = None
        if state is not None and stored is None and seq < state.max_seq:
            gap_row = self.db.execute(
                "SELECT lo, hi FROM gaps WHERE device_id=? AND lo<=? AND hi>=?", (device, seq, seq)
            ).fetchone()
        gap = (int(gap_row[0]), int(gap_row[1])) if gap_row else None
        first_open = False
        if parallel_workers and state is not None and stored is None and seq < state.first_seq:
            first_open = self._first_reading_open(device, state.first_seq)
        decision = decide(state, seq, item.digest, stored, gap, first_open)
        if decision.verdict == DUPLICATE:
            self.db.execute("UPDATE devices SET duplicates=duplicates+1 WHERE device_id=?", (device,))
            result.duplicates.append((device, seq))
            return 0
        if decision.verdict != ACCEPT:
            detail = f"{device} seq {seq}: " + (
                "different bytes than the reading already held" if stored is not None else "already accounted for"
            )
            result.rejected.append(Rejected(decision.verdict, device, detail))
            return 0
        self._store_accepted(item, now, window, result, window_s, closed_until)
        new_state = decision.state
        assert new_state is not None
        self.db.execute(
            "INSERT INTO devices(device_id, first_seq, max_seq, accepted) VALUES (?, ?, ?, 1) "
            "ON CONFLICT(device_id) DO UPDATE SET first_seq=excluded.first_seq, max_seq=excluded.max_seq, "
            "accepted=accepted+1",
            (device, new_state.first_seq, new_state.max_seq),
        )
        if decision.new_gap is not None:
            low, high = decision.new_gap
            self.db.execute("INSERT INTO gaps(device_id, lo, hi, detected_at) VALUES (?, ?, ?, ?)",
                            (device, low, high, now))
            result.new_gaps.append((device, low, high))
        if decision.filled_gap is not None:
            self.db.execute("DELETE FROM gaps WHERE device_id=? AND lo=?", (device, decision.filled_gap[0]))
            for low, high in split_gap(decision.filled_gap, seq):
                self.db.execute("INSERT INTO gaps(device_id, lo, hi, detected_at) VALUES (?, ?, ?, ?)",
                                (device, low, high, now))
            result.filled.append((device, seq))
        result.accepted.append((device, seq))
        return len(item.signed)

    def _ingest_flux(self, item: VerifiedFlux, now: int, window: int, result: IngestResult) -> int:
        """Store one verified chamber flux record (in the window it was received in); an exact redelivery is a
        duplicate, another record for the same samples a ``flux_conflict``. Returns the bytes it added."""
        record = item.flux
        device, first = record.device_id, record.seq[0]
        row = self.db.execute("SELECT digest FROM fluxes WHERE device_id=? AND first_seq=?", (device, first)).fetchone()
        if row is not None:
            if bytes(row[0]) == item.digest:
                result.flux_duplicates.append((device, first))
            else:
                result.rejected.append(Rejected("flux_conflict", device, f"{device} samples from seq {first}: "
                                                "different bytes than the flux record already held"))
            return 0
        self.db.execute(
            "INSERT INTO fluxes(device_id, first_seq, last_seq, digest, cose, session_start, session_end, received_at, "
            "window_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device, first, record.seq[1], item.digest, item.signed, record.session[0], record.session[1], now,
             window),
        )
        result.fluxes_accepted.append((device, first))
        return len(item.signed)

    def fluxes(self) -> list[tuple[str, int, bytes | None, int | None]]:
        """(device, first sample seq, signed record (None once the cloud holds it), batch seq or None) of every
        flux record held."""
        rows = self.db.execute(
            "SELECT device_id, first_seq, cose, batch_seq FROM fluxes ORDER BY device_id, first_seq").fetchall()
        return [(r[0], int(r[1]), None if r[2] is None else bytes(r[2]), None if r[3] is None else int(r[3]))
                for r in rows]

    def _first_reading_open(self, device: str, first_seq: int) -> bool:
        """Whether the device's first accepted reading is still in no sealed batch (open, or held for
        re-timing): then nothing of the device has been sealed, so a lower number is no replay."""
        row = self.db.execute(
            "SELECT batch_seq IS NULL FROM readings WHERE device_id=? AND seq=? UNION ALL "
            "SELECT 1 FROM held WHERE device_id=? AND seq=? AND rejected IS NULL",
            (device, first_seq, device, first_seq)).fetchone()
        return bool(row and row[0])

    def _store_accepted(
        self, item: Verified, now: int, window: int, result: IngestResult, window_s: int, closed_until: int
    ) -> None:
        reading = item.reading
        if reading.timestamp is not None:
            self.db.execute(
                "INSERT INTO readings(device_id, seq, digest, cose, timestamp, received_at, window_start) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (reading.device_id, reading.seq, item.digest, item.signed, reading.timestamp, now, window),
            )
            if is_reference(reading) and self._reference(reading.device_id, reading.boot) is None:
                # the boot's first synced reading: it re-times the readings of that boot held so far, and later ones
                self.db.execute("INSERT INTO boot_refs(device_id, boot, seq, cose) VALUES (?, ?, ?, ?)",
                                (reading.device_id, reading.boot, reading.seq, item.signed))
                self._release_held(reading, item.signed, result, window_s, closed_until)
            return
        self.db.execute(
            "INSERT INTO held(device_id, seq, digest, cose, boot, up, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (reading.device_id, reading.seq, item.digest, item.signed, reading.boot, reading.up, now),
        )
        reference = self._reference(reading.device_id, reading.boot)
        if reference is not None:
            self._release_held(decode_signed_reading(reference), reference, result, window_s, closed_until,
                               only_seq=reading.seq)

    def _reference(self, device_id: str, boot: int | None) -> bytes | None:
        row = self.db.execute("SELECT cose FROM boot_refs WHERE device_id=? AND boot=?", (device_id, boot)).fetchone()
        return bytes(row[0]) if row else None

    def _release_held(
        self, reference: Reading, reference_signed: bytes, result: IngestResult, window_s: int, closed_until: int,
        only_seq: int | None = None,
    ) -> None:
        """Re-time the waiting readings of the reference's device and boot into their windows (or reject them)."""
        rows = self.db.execute(
            "SELECT seq, digest, cose, received_at FROM held WHERE device_id=? AND boot=? AND rejected IS NULL "
            "AND (? IS NULL OR seq=?) ORDER BY seq", (reference.device_id, reference.boot, only_seq, only_seq)
        ).fetchall()
        for seq, digest, signed, received_at in rows:
            held = decode_signed_reading(bytes(signed))
            try:
                timestamp = retimed_timestamp(held, reference)
            except RetimeRejected as err:
                self.db.execute("UPDATE held SET rejected=? WHERE device_id=? AND seq=?",
                                (err.reason, held.device_id, seq))
                result.rejected.append(Rejected(err.reason, held.device_id, f"{held.device_id} seq {seq}: {err}"))
                continue
            self.db.execute(
                "INSERT INTO readings(device_id, seq, digest, cose, timestamp, received_at, window_start) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (held.device_id, seq, bytes(digest), bytes(signed), timestamp, int(received_at),
                 assign_window(timestamp, window_s, closed_until)),
            )
            self.db.execute("INSERT INTO retimed(device_id, seq, timestamp, reference) VALUES (?, ?, ?, ?)",
                            (held.device_id, seq, timestamp, reference_signed))
            self.db.execute("DELETE FROM held WHERE device_id=? AND seq=?", (held.device_id, seq))
            result.retimed.append((held.device_id, seq))

    def expire_held(self, timeout_s: int) -> list[Rejected]:
        """Reject the held readings whose reference has not come within ``timeout_s`` (kept, counted, never
        uploaded): their time cannot be known."""
        with self._write():
            now = int(self.clock())
            rows = self.db.execute(
                "SELECT device_id, seq, boot, received_at FROM held WHERE rejected IS NULL AND received_at <= ?",
                (now - timeout_s,)).fetchall()
            out = []
            for device, seq, boot, received_at in rows:
                self.db.execute("UPDATE held SET rejected=? WHERE device_id=? AND seq=?", (TIMEOUT, device, seq))
                out.append(Rejected(TIMEOUT, device, f"{device} seq {seq} (boot {boot}): no synced reading of its boot "
                                                     f"within {timeout_s} s of {received_at}"))
                self.db.execute(
                    "INSERT INTO rejections(device_label, reason, count, last_at) VALUES (?, ?, 1, ?) "
                    "ON CONFLICT(device_label, reason) DO UPDATE SET count=count+1, last_at=excluded.last_at",
                    (device, TIMEOUT, now),
                )
            return out

    def held_readings(self) -> list[tuple[str, int, str | None]]:
        """(device, seq, rejection reason or None while waiting) of every held unsynced reading."""
        rows = self.db.execute("SELECT device_id, seq, rejected FROM held ORDER BY device_id, seq").fetchall()
        return [(r[0], int(r[1]), r[2]) for r in rows]

    # -- windows and batches ------------------------------------------------------------------------

    def open_windows(self) -> list[int]:
        rows = self.db.execute(
            "SELECT window_start FROM readings WHERE batch_seq IS NULL UNION "
            "SELECT window_start FROM fluxes WHERE batch_seq IS NULL ORDER BY window_start"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def close_window(self, start: int, window_s: int, build: BatchBuilder) -> Batch | None:
        """Seal the open readings of one window into the next batch, all in one transaction."""
        with self._write():
            rows = self.db.execute(
                "SELECT r.device_id, r.seq, r.cose, t.timestamp, t.reference FROM readings r LEFT JOIN retimed t "
                "ON t.device_id=r.device_id AND t.seq=r.seq WHERE r.batch_seq IS NULL AND r.window_start=? "
                "ORDER BY r.device_id, r.seq",
                (start,),
            ).fetchall()
            fluxes = [bytes(r[0]) for r in self.db.execute(
                "SELECT cose FROM fluxes WHERE batch_seq IS NULL AND window_start=? ORDER BY device_id, first_seq",
                (start,)).fetchall()]
            if not rows and not fluxes:
                return None
            readings = [OpenReading(r[0], int(r[1]), bytes(r[2]), None if r[3] is None else (int(r[3]), bytes(r[4])))
                        for r in rows]
            devices = sorted({r.device_id for r in readings})
            baselines: dict[str, Baseline] = {}
            for device in devices:
                b = self.db.execute("SELECT seq, energy_wh, timestamp FROM baselines WHERE device_id=?",
                                    (device,)).fetchone()
                if b:
                    baselines[device] = (int(b[0]), int(b[1]), None if b[2] is None else int(b[2]))
            batch_seq = int(self._meta("next_batch_seq", "0") or 0)
            prev = bytes.fromhex(self._meta("prev_hash", ZERO_HASH.hex()) or ZERO_HASH.hex())
            batch, new_baselines = build(start, readings, baselines, batch_seq, prev, fluxes)
            self.db.execute(
                "INSERT INTO batches(batch_seq, batch_id, window_start, window_end, blob, hash, created, readings) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (batch_seq, batch.id, start, start + window_s, batch.encode(), batch.hash,
                 int(batch.header["created"]), len(readings)),
            )
            self.db.execute("UPDATE readings SET batch_seq=? WHERE batch_seq IS NULL AND window_start=?",
                            (batch_seq, start))
            self.db.execute("UPDATE fluxes SET batch_seq=? WHERE batch_seq IS NULL AND window_start=?",
                            (batch_seq, start))
            for device, base in new_baselines.items():
                self._set_baseline(device, base)
            self._set_meta("next_batch_seq", str(batch_seq + 1))
            self._set_meta("prev_hash", batch.hash.hex())
            self._add_held(len(batch.encode()))
            closed = max(int(self._meta("closed_until", "0") or 0), start + window_s)
            self._set_meta("closed_until", str(closed))
            return batch

    def chain_is_empty(self) -> bool:
        count: int = self.db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        return count == 0

    def set_chain_head(self, next_batch_seq: int, prev_hash: bytes) -> None:
        """Continue the batch chain from the cloud's state (a gateway that lost its spool)."""
        with self._write():
            self._set_meta("next_batch_seq", str(next_batch_seq))
            self._set_meta("prev_hash", prev_hash.hex())

    def next_unacked(self) -> PendingBatch | None:
        row = self.db.execute(
            "SELECT batch_seq, batch_id, blob, hash, created FROM batches WHERE acked_at IS NULL "
            "ORDER BY batch_seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return PendingBatch(int(row[0]), row[1], bytes(row[2]), bytes(row[3]), int(row[4]))

    def unacked(self) -> list[PendingBatch]:
        rows = self.db.execute(
            "SELECT batch_seq, batch_id, blob, hash, created FROM batches WHERE acked_at IS NULL ORDER BY batch_seq"
        ).fetchall()
        return [PendingBatch(int(r[0]), r[1], bytes(r[2]), bytes(r[3]), int(r[4])) for r in rows]

    def batch_hash(self, batch_seq: int) -> bytes | None:
        row = self.db.execute("SELECT hash FROM batches WHERE batch_seq=?", (batch_seq,)).fetchone()
        return bytes(row[0]) if row else None

    def mark_acked(self, batch_seq: int, receipt: dict[str, Any], prune: bool) -> None:
        """Store the cloud's receipt; with ``prune`` drop the bytes the cloud now holds (digests stay for dedup)."""
        with self._write():
            changed = self.db.execute(
                "UPDATE batches SET acked_at=?, receipt=? WHERE batch_seq=? AND acked_at IS NULL",
                (int(self.clock()), json.dumps(receipt, sort_keys=True), batch_seq),
            ).rowcount
            if prune and changed:
                freed = self.db.execute(
                    "SELECT (SELECT COALESCE(SUM(LENGTH(cose)), 0) FROM readings WHERE batch_seq=?) + "
                    "(SELECT COALESCE(SUM(LENGTH(cose)), 0) FROM fluxes WHERE batch_seq=?) + "
                    "(SELECT COALESCE(LENGTH(blob), 0) FROM batches WHERE batch_seq=?)",
                    (batch_seq, batch_seq, batch_seq),
                ).fetchone()[0]
                self._add_held(-int(freed))
                self.db.execute("UPDATE readings SET cose=NULL WHERE batch_seq=?", (batch_seq,))
                self.db.execute("UPDATE fluxes SET cose=NULL WHERE batch_seq=?", (batch_seq,))
                self.db.execute("UPDATE batches SET blob=NULL WHERE batch_seq=?", (batch_seq,))

    def replace_unacked(self, rebuilt: Sequence[tuple[int, Batch]], next_batch_seq: int, prev_hash: bytes) -> None:
        """Renumber the unacknowledged batches (re-signed by the caller) after a resync with the cloud."""
        with self._write():
            old = [int(r[0]) for r in self.db.execute(
                "SELECT batch_seq FROM batches WHERE acked_at IS NULL ORDER BY batch_seq").fetchall()]
            if len(old) != len(rebuilt):
                raise ValueError("the set of unacknowledged batches changed during the resync")
            # Move out of the way first: new numbers may overlap old ones.
            for old_seq in old:
                self.db.execute("UPDATE batches SET batch_seq=? WHERE batch_seq=?", (-1 - old_seq, old_seq))
                self.db.execute("UPDATE readings SET batch_seq=? WHERE batch_seq=?", (-1 - old_seq, old_seq))
                self.db.execute("UPDATE fluxes SET batch_seq=? WHERE batch_seq=?", (-1 - old_seq, old_seq))
            for old_seq, (new_seq, batch) in zip(old, rebuilt, strict=True):
                self.db.execute(
                    "UPDATE batches SET batch_seq=?, batch_id=?, blob=?, hash=? WHERE batch_seq=?",
                    (new_seq, batch.id, batch.encode(), batch.hash, -1 - old_seq),
                )
                self.db.execute("UPDATE readings SET batch_seq=? WHERE batch_seq=?", (new_seq, -1 - old_seq))
                self.db.execute("UPDATE fluxes SET batch_seq=? WHERE batch_seq=?", (new_seq, -1 - old_seq))
            self._set_meta("next_batch_seq", str(next_batch_seq))
            self._set_meta("prev_hash", prev_hash.hex())

    # -- operator actions on a halted upload (`carbontrace-gateway uploads ...`) ----------------------

    def clear_halt(self) -> str | None:
        """Let uploads resume (the running gateway reads this flag before each attempt); the old halt record."""
        with self._write():
            old = self._meta("upload_halted")
            self.db.execute("DELETE FROM meta WHERE key='upload_halted'")
        return old

    def skip_batch(self, batch_seq: int, reason: str, rebase: Rebase | None = None) -> int:
        """Move the next unacknowledged batch, which must be ``batch_seq``, to the dead letters: its blob and its
        readings stay in the spool (never deleted), it is no longer uploaded, and the halt is cleared. The
        batches after it still name it as ``prev``: the cloud answers 409 and the forwarder's resync renumbers
        them onto the cloud's chain. Returns the dead letter's id.

        With ``rebase`` (``batcher.rebase_after_skip`` with the gateway's key) the later batches are rebuilt at
        once: renumbered onto the skipped one's place and their energy aggregates counted from the baseline the
        cloud has, not from the skipped readings (which the cloud would refuse as aggregate_mismatch)."""
        with self._write():
            # Only while halted: then the forwarder has no upload in flight that could acknowledge the batch
            # whose number the rebuilt successor is about to take.
            if self._meta("upload_halted") is None:
                raise ValueError("uploads are not halted; only a halted batch can be skipped")
            row = self.db.execute(
                "SELECT batch_seq FROM batches WHERE acked_at IS NULL ORDER BY batch_seq LIMIT 1").fetchone()
            if row is None or int(row[0]) != batch_seq:
                raise ValueError(f"batch {batch_seq} is not the next unacknowledged batch (that is "
                                 f"{None if row is None else int(row[0])}); only the one that blocks can be skipped")
            cursor = self.db.execute(
                "INSERT INTO dead_letters(batch_seq, batch_id, window_start, window_end, blob, hash, created, "
                "readings, reason, skipped_at) SELECT batch_seq, batch_id, window_start, window_end, blob, hash, "
                "created, readings, ?, ? FROM batches WHERE batch_seq=?", (reason, int(self.clock()), batch_seq))
            dead_id = int(cursor.lastrowid or 0)
            # Its readings leave the batch numbering (which a resync rewrites) without reopening their window.
            self.db.execute("UPDATE readings SET batch_seq=? WHERE batch_seq=?", (DEAD_LETTER_SEQ - dead_id, batch_seq))
            self.db.execute("UPDATE fluxes SET batch_seq=? WHERE batch_seq=?", (DEAD_LETTER_SEQ - dead_id, batch_seq))
            skipped_blob = self.db.execute("SELECT blob FROM batches WHERE batch_seq=?", (batch_seq,)).fetchone()[0]
            self.db.execute("DELETE FROM batches WHERE batch_seq=?", (batch_seq,))
            self.db.execute("DELETE FROM meta WHERE key='upload_halted'")
            if rebase is not None and skipped_blob is not None:
                self._rebase_later(decode_batch(bytes(skipped_blob)), batch_seq, rebase)
        return dead_id

    def _rebase_later(self, skipped: Batch, skipped_seq: int, rebase: Rebase) -> None:
        rows = self.db.execute(
            "SELECT batch_seq, blob FROM batches WHERE acked_at IS NULL AND batch_seq > ? ORDER BY batch_seq",
            (skipped_seq,)).fetchall()
        later = [decode_batch(bytes(r[1])) for r in rows]
        rebuilt, baselines = rebase(skipped, later)
        for (old_seq, _), batch in zip(rows, rebuilt, strict=True):
            new_seq = int(batch.header["batch_seq"])
            self.db.execute("UPDATE batches SET batch_seq=?, batch_id=?, blob=?, hash=? WHERE batch_seq=?",
                            (new_seq, batch.id, batch.encode(), batch.hash, old_seq))
            self.db.execute("UPDATE readings SET batch_seq=? WHERE batch_seq=?", (new_seq, old_seq))
            self.db.execute("UPDATE fluxes SET batch_seq=? WHERE batch_seq=?", (new_seq, old_seq))
        self._set_meta("next_batch_seq", str(skipped_seq + len(rebuilt)))
        self._set_meta("prev_hash", (rebuilt[-1].hash if rebuilt else bytes(skipped.header["prev"])).hex())
        for device, base in baselines.items():
            if base is None:
                self.db.execute("DELETE FROM baselines WHERE device_id=?", (device,))
            else:
                self._set_baseline(device, base)

    def _set_baseline(self, device: str, base: Baseline) -> None:
        self.db.execute(
            "INSERT INTO baselines(device_id, seq, energy_wh, timestamp) VALUES (?, ?, ?, ?) ON CONFLICT(device_id) "
            "DO UPDATE SET seq=excluded.seq, energy_wh=excluded.energy_wh, timestamp=excluded.timestamp",
            (device, base[0], base[1], base[2]))

    def dead_letters(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT dead_id, batch_seq, batch_id, window_start, window_end, readings, reason, skipped_at, "
            "blob IS NOT NULL FROM dead_letters ORDER BY dead_id").fetchall()
        names = ("dead_id", "batch_seq", "batch_id", "window_start", "window_end", "readings", "reason",
                 "skipped_at", "blob_kept")
        return [{**dict(zip(names, r, strict=True)), "blob_kept": bool(r[-1])} for r in rows]

    # -- reporting ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        one = self.db.execute
        oldest = one("SELECT MIN(created) FROM batches WHERE acked_at IS NULL").fetchone()[0]
        return {
            "open_readings": one("SELECT COUNT(*) FROM readings WHERE batch_seq IS NULL").fetchone()[0],
            "open_fluxes": one("SELECT COUNT(*) FROM fluxes WHERE batch_seq IS NULL").fetchone()[0],
            "unacked_batches": one("SELECT COUNT(*) FROM batches WHERE acked_at IS NULL").fetchone()[0],
            "acked_batches": one("SELECT COUNT(*) FROM batches WHERE acked_at IS NOT NULL").fetchone()[0],
            "oldest_unacked_created": oldest,
            "last_acked_at": one("SELECT MAX(acked_at) FROM batches").fetchone()[0],
            "missing_readings": one("SELECT COALESCE(SUM(hi - lo + 1), 0) FROM gaps").fetchone()[0],
            "held_bytes": self.held_bytes(),
            "file_bytes": self.file_bytes(),
            "upload_halted": self._meta("upload_halted"),
            "dead_letters": one("SELECT COUNT(*) FROM dead_letters").fetchone()[0],
            "held_unsynced": one("SELECT COUNT(*) FROM held WHERE rejected IS NULL").fetchone()[0],
            "registry_synced_at": self._meta("registry_synced_at"),
            "next_batch_seq": int(self._meta("next_batch_seq", "0") or 0),
        }

    def gaps(self, device_id: str) -> list[tuple[int, int]]:
        rows = self.db.execute("SELECT lo, hi FROM gaps WHERE device_id=? ORDER BY lo", (device_id,)).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]

    def rejection_counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.execute("SELECT device_label, reason, count FROM rejections").fetchall()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def device_counts(self) -> dict[str, tuple[int, int]]:
        rows = self.db.execute("SELECT device_id, accepted, duplicates FROM devices").fetchall()
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}
