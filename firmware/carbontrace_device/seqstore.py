"""Per-device sequence numbers that never repeat, across reboots and crashes; the boot counter. MicroPython-safe.

The file (default ``seq.dat``) holds one 12-byte record: the first number NOT yet reserved (u64) and
its CRC-32 (u32), big-endian. Numbers are handed out from a reserved block: before the first number of
a block is used, the block's end is written with an atomic replace (``FlashDir.write_atomic``). After
a crash, at any point, the file names a number above every number ever handed out, so a restart
continues from there; at most one block of numbers is skipped, none is reused. Blocks of 64 mean one
small flash write per 64 readings.

``BootCounter`` (default ``boot.dat``, the same 12-byte record) counts power-ups: each start writes the
count + 1 with an atomic replace before any reading is made, so two boots never share a number. Readings
carry it (reading format 2) so the gateway re-times a boot's unsynced readings only from a synced reading
of the same boot.
"""

import struct

from carbontrace_device.outbox import crc32

DEFAULT_BLOCK = 64
MAX_SEQ = (1 << 53) - 1  # the reading format's limit
MAX_BOOT = (1 << 32) - 1  # likewise, for the boot counter


class SeqStoreError(Exception):
    pass


def encode_record(next_free):
    body = struct.pack(">Q", next_free)
    return body + struct.pack(">I", crc32(body))


def decode_record(data):
    """The stored number, or None if the bytes are missing or damaged."""
    if data is None or len(data) != 12:
        return None
    if crc32(data[:8]) != struct.unpack(">I", data[8:])[0]:
        return None
    return struct.unpack(">Q", data[:8])[0]


class SeqStore:
    def __init__(self, flash, name="seq.dat", block=DEFAULT_BLOCK):
        if block < 1:
            raise SeqStoreError("sequence block must be at least 1")
        self.flash = flash
        self.name = name
        self.block = block
        stored = decode_record(flash.read(name))
        if stored is None and flash.exists(name):
            # A damaged record cannot tell which numbers were used: refuse rather than risk reuse.
            raise SeqStoreError("sequence file %s is damaged" % flash.path(name))
        self._next = 0 if stored is None else stored
        self._reserved_end = self._next  # nothing reserved by this boot yet
        self.reservations = 0

    def next(self):
        """The next sequence number; reserves a new block on flash first when needed."""
        if self._next >= self._reserved_end:
            self._reserve(self._next + self.block)
        value = self._next
        self._next += 1
        return value

    def peek(self):
        """The number ``next()`` would return (nothing is reserved or consumed)."""
        return self._next

    def _reserve(self, end):
        if end > MAX_SEQ:
            raise SeqStoreError("sequence numbers exhausted")
        self.flash.write_atomic(self.name, encode_record(end))
        self._reserved_end = end
        self.reservations += 1


class BootCounter:
    """This boot's number: one more than the last boot's, persisted before it is used."""

    def __init__(self, flash, name="boot.dat"):
        stored = decode_record(flash.read(name))
        if stored is None and flash.exists(name):
            # Starting again from 0 could give this boot an earlier boot's number: refuse, like the seq store.
            raise SeqStoreError("boot counter file %s is damaged" % flash.path(name))
        # The file holds the number of the last boot (none yet: the first boot is 0).
        boot = 0 if stored is None else stored + 1
        if boot > MAX_BOOT:
            raise SeqStoreError("boot counter exhausted")
        flash.write_atomic(name, encode_record(boot))
        self.boot = boot
