"""The flash outbox: a bounded ring of signed readings that leave only on PUBACK. MicroPython-safe.

Every signed reading is appended here BEFORE it is published, and removed (marked acknowledged) only
when the broker's PUBACK for it arrives. After a power cut everything still pending is found again and
re-sent. When the ring is full the OLDEST pending reading is overwritten and counted in ``dropped``.

File layout (one file, default ``outbox.dat``), all integers big-endian:

    file header, 16 bytes:  "CTOB" | version u8 (=1) | reserved u8 | slot_size u16 | slot_count u32 | 4 x 0
    slot i at 16 + i * slot_size, slot_size bytes:
        state u8       0xA5 pending, 0x00 acknowledged, anything else: empty
        magic u8       0x5A
        length u16     payload bytes (<= slot_size - 16)
        record_id u32  append counter: record n lives in slot n % slot_count
        dropped u32    total readings dropped for lack of space, as of this append
        crc u32        CRC-32 of bytes 1..11 of this header + the payload
        payload        the COSE_Sign1 bytes; the rest of the slot is left as it was

No separate index is written: opening the file scans the slot headers. Pending records (state 0xA5 and a
good CRC) are the queue, in record_id order; the next record_id and the drop count come from the valid
slot with the highest record_id (every append writes its own, so the count needs no extra write).

Crash-safety argument. Each mutation is one write of contiguous bytes followed by flush: an append writes
a whole slot, an acknowledgement writes the single state byte. LittleFS (ESP32, Pico W) commits a file
copy-on-write at flush, so after a power cut a slot is either the old or the new version. On a
filesystem that can tear a write, a torn append fails its CRC and reads as empty: that reading was
never published (publishing starts after the append returned), so it is lost without having been
seen, and its sequence number is never reused (seqstore reserves ahead). A lost acknowledgement (crash
between PUBACK and the state write) only re-sends a reading the broker already has; QoS 1 allows that,
and receivers deduplicate by (device, seq). Acknowledged slots are trusted without a CRC check: their
bytes were complete before the acknowledgement could be written.

Changing the slot geometry (a firmware update with another budget or slot size) migrates the pending
records into a new file ``<name>.new`` and renames it over the old one; a crash during migration leaves
the old file in place and the migration starts over.
"""

import struct

try:
    from binascii import crc32 as _crc32
except ImportError:
    _crc32 = None

FILE_MAGIC = b"CTOB"
FILE_VERSION = 1
FILE_HEADER_SIZE = 16
SLOT_HEADER_SIZE = 16
SLOT_MAGIC = 0x5A
STATE_PENDING = 0xA5
STATE_ACKED = 0x00
DEFAULT_BUDGET_BYTES = 256 * 1024
# A worst-case reading (64-character device id, every field at its maximum) signs to 393 bytes.
DEFAULT_SLOT_SIZE = 416

_FILE_HEADER = ">4sBBHI4x"
_SLOT_HEADER = ">BBHIII"


def crc32(data, crc=0):
    if _crc32 is not None:
        return _crc32(data, crc) & 0xFFFFFFFF
    crc = crc ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def capacity_for_budget(budget_bytes, slot_size=DEFAULT_SLOT_SIZE):
    """How many readings a file of at most ``budget_bytes`` holds."""
    return (budget_bytes - FILE_HEADER_SIZE) // slot_size


class OutboxError(Exception):
    pass


class Outbox:
    def __init__(self, flash, name="outbox.dat", budget_bytes=DEFAULT_BUDGET_BYTES, slot_size=DEFAULT_SLOT_SIZE):
        if slot_size <= SLOT_HEADER_SIZE or slot_size > 65535:
            raise OutboxError("outbox slot size %d out of range" % slot_size)
        self.flash = flash
        self.name = name
        self.slot_size = slot_size
        self.slot_count = capacity_for_budget(budget_bytes, slot_size)
        if self.slot_count < 2:
            raise OutboxError("outbox budget of %d bytes holds fewer than 2 readings" % budget_bytes)
        self.max_payload = slot_size - SLOT_HEADER_SIZE
        self.dropped = 0
        self._pending = []  # record ids, oldest first
        self._next_id = 0
        self._file = None
        self._file_size = 0
        # One slot's bytes (header + payload), reused by every append: an append allocates no record buffer.
        self._slot = bytearray(slot_size)
        self._slot_view = memoryview(self._slot)
        self._open()

    # --- opening, scanning, migrating ---------------------------------------------------------
    def _header_bytes(self, slot_size, slot_count):
        return struct.pack(_FILE_HEADER, FILE_MAGIC, FILE_VERSION, 0, slot_size, slot_count)

    def _open(self):
        flash = self.flash
        size = flash.size(self.name)
        if size < FILE_HEADER_SIZE:
            flash.write_atomic(self.name, self._header_bytes(self.slot_size, self.slot_count))
        else:
            with flash.open(self.name, "rb") as f:
                head = f.read(FILE_HEADER_SIZE)
            magic, version, _r, slot_size, slot_count = struct.unpack(_FILE_HEADER, head)
            if magic != FILE_MAGIC or version != FILE_VERSION:
                raise OutboxError("%s is not a version %d outbox file" % (flash.path(self.name), FILE_VERSION))
            if slot_size != self.slot_size or slot_count != self.slot_count:
                self._migrate(slot_size, slot_count)
        self._file = flash.open(self.name, "r+b")
        self._file_size = flash.size(self.name)
        self._scan()

    def _migrate(self, old_slot_size, old_slot_count):
        new_name = self.name + ".new"
        self.flash.remove(new_name)
        old = Outbox(self.flash, self.name, FILE_HEADER_SIZE + old_slot_size * old_slot_count, old_slot_size)
        new = Outbox(self.flash, new_name, FILE_HEADER_SIZE + self.slot_size * self.slot_count, self.slot_size)
        new.dropped = old.dropped
        for record_id in old.pending():
            payload = old.read(record_id)
            if payload is None or len(payload) > new.max_payload:
                new.dropped += 1
                continue
            new.append(payload)
        old.close()
        new.close()
        self.flash.replace(new_name, self.name)

    def _scan(self):
        f = self._file
        pending = []
        newest_id = -1
        newest_dropped = 0
        for slot in range(self.slot_count):
            offset = FILE_HEADER_SIZE + slot * self.slot_size
            if offset + SLOT_HEADER_SIZE > self._file_size:
                break
            f.seek(offset)
            head = f.read(SLOT_HEADER_SIZE)
            state, magic, length, record_id, dropped, crc = struct.unpack(_SLOT_HEADER, head)
            if magic != SLOT_MAGIC or length > self.max_payload or record_id % self.slot_count != slot:
                continue
            if state == STATE_PENDING:
                payload = f.read(length)
                if len(payload) != length or crc32(payload, crc32(head[1:12])) != crc:
                    continue  # torn append: never published
                pending.append(record_id)
            elif state != STATE_ACKED:
                continue
            if record_id > newest_id:
                newest_id = record_id
                newest_dropped = dropped
        pending.sort()
        # Records older than one lap of the ring cannot be pending; a stale slot would mean a corrupt file.
        self._pending = [r for r in pending if r > newest_id - self.slot_count]
        self._next_id = newest_id + 1
        self.dropped = newest_dropped

    # --- the queue ---------------------------------------------------------------------------
    def capacity(self):
        return self.slot_count

    def depth(self):
        return len(self._pending)

    def pending(self):
        """Pending record ids, oldest first (a copy)."""
        return list(self._pending)

    def is_pending(self, record_id):
        return record_id in self._pending

    def append(self, payload):
        """Store ``payload`` durably; returns its record id. Drops the oldest pending one if full."""
        length = len(payload)
        if length > self.max_payload:
            raise OutboxError("reading of %d bytes exceeds the %d-byte outbox slot" % (length, self.max_payload))
        record_id = self._next_id
        if self._pending and self._pending[0] <= record_id - self.slot_count:
            self._pending.pop(0)
            self.dropped += 1
        slot = self._slot_view
        end_of_payload = SLOT_HEADER_SIZE + length
        struct.pack_into(_SLOT_HEADER, self._slot, 0, STATE_PENDING, SLOT_MAGIC, length, record_id, self.dropped, 0)
        slot[SLOT_HEADER_SIZE:end_of_payload] = payload
        crc = crc32(slot[SLOT_HEADER_SIZE:end_of_payload], crc32(slot[1:12]))
        struct.pack_into(">I", self._slot, 12, crc)
        offset = self._offset(record_id)
        f = self._file
        if offset > self._file_size:
            # fill the gap up to this slot in small pieces (no large allocation on the board)
            f.seek(self._file_size)
            gap = offset - self._file_size
            filler = b"\xff" * 64
            while gap > 0:
                f.write(filler[: min(gap, 64)])
                gap -= 64
        f.seek(offset)
        f.write(slot[:end_of_payload])
        f.flush()
        end = offset + end_of_payload
        if end > self._file_size:
            self._file_size = end
        self._pending.append(record_id)
        self._next_id = record_id + 1
        return record_id

    def read(self, record_id):
        """The payload of a pending record, or None if it is no longer pending or fails its CRC."""
        if record_id not in self._pending:
            return None
        f = self._file
        f.seek(self._offset(record_id))
        head = f.read(SLOT_HEADER_SIZE)
        state, magic, length, stored_id, _dropped, crc = struct.unpack(_SLOT_HEADER, head)
        if state != STATE_PENDING or magic != SLOT_MAGIC or stored_id != record_id or length > self.max_payload:
            return None
        payload = f.read(length)
        if crc32(payload, crc32(head[1:12])) != crc:
            return None
        return payload

    def ack(self, record_id):
        """Mark a record delivered; False if it was not pending (already acked, or dropped)."""
        if record_id not in self._pending:
            return False
        f = self._file
        f.seek(self._offset(record_id))
        f.write(bytes((STATE_ACKED,)))
        f.flush()
        self._pending.remove(record_id)
        return True

    def discard(self, record_id):
        """Remove an unreadable record (corrupt on flash), counting it as dropped."""
        if self.ack(record_id):
            self.dropped += 1

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _offset(self, record_id):
        return FILE_HEADER_SIZE + (record_id % self.slot_count) * self.slot_size
