"""Flash outbox, sequence store, device key, clock and config on the host port's flash directory."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from carbontrace_device import config
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.keystore import DeviceKey, KeyStoreError
from carbontrace_device.outbox import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_SLOT_SIZE,
    FILE_HEADER_SIZE,
    Outbox,
    OutboxError,
    capacity_for_budget,
    crc32,
)
from carbontrace_device.seqstore import BootCounter, SeqStore, SeqStoreError, decode_record
from carbontrace_device.timekeeping import Clock

from carbontrace_protocol import p256
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading
from carbontrace_protocol.verify import verify_reading
from simulators.host_port import HostPort


def payload(i: int, size: int = 120) -> bytes:
    return (b"reading-%06d-" % i).ljust(size, bytes([i % 251]))


def test_default_budget_capacity_and_crc() -> None:
    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
    assert DEFAULT_BUDGET_BYTES == 262144
    assert capacity_for_budget(DEFAULT_BUDGET_BYTES) == (262144 - FILE_HEADER_SIZE) // DEFAULT_SLOT_SIZE == 630


def test_outbox_survives_reopen_and_acks_in_any_order(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    box = Outbox(flash, budget_bytes=16 + 10 * 200, slot_size=200)
    assert box.capacity() == 10
    ids = [box.append(payload(i)) for i in range(6)]
    assert ids == [0, 1, 2, 3, 4, 5]
    assert box.ack(2) and box.ack(0)
    assert not box.ack(0)  # already acknowledged
    # no close(): a power cut keeps whatever was flushed
    again = Outbox(flash, budget_bytes=16 + 10 * 200, slot_size=200)
    assert again.pending() == [1, 3, 4, 5]
    assert [again.read(r) for r in again.pending()] == [payload(i) for i in (1, 3, 4, 5)]
    assert again.append(payload(6)) == 6  # ids continue
    assert os.path.getsize(tmp_path / "outbox.dat") <= 16 + 10 * 200


def test_outbox_overflow_drops_oldest_and_counts_across_reboots(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    box = Outbox(flash, budget_bytes=16 + 4 * 160, slot_size=160)
    for i in range(7):
        box.append(payload(i, 100))
    assert box.depth() == 4 and box.dropped == 3
    assert [box.read(r) for r in box.pending()] == [payload(i, 100) for i in (3, 4, 5, 6)]
    assert not box.ack(1)  # a late PUBACK for a dropped reading changes nothing
    reopened = Outbox(flash, budget_bytes=16 + 4 * 160, slot_size=160)
    assert reopened.dropped == 3 and reopened.pending() == [3, 4, 5, 6]
    for record_id in reopened.pending():
        reopened.ack(record_id)
    reopened.append(payload(7, 100))
    assert Outbox(flash, budget_bytes=16 + 4 * 160, slot_size=160).dropped == 3
    with pytest.raises(OutboxError):
        reopened.append(b"x" * 145)


def test_torn_append_reads_as_empty_and_older_records_survive(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    box = Outbox(flash, budget_bytes=16 + 8 * 200, slot_size=200)
    for i in range(3):
        box.append(payload(i))
    box.close()
    # a power cut in the middle of writing record 2's slot: its second half never reached flash
    path = tmp_path / "outbox.dat"
    data = bytearray(path.read_bytes())
    slot2 = 16 + 2 * 200
    data[slot2 + 60 : slot2 + 136] = b"\xff" * 76
    path.write_bytes(bytes(data))
    reopened = Outbox(flash, budget_bytes=16 + 8 * 200, slot_size=200)
    assert reopened.pending() == [0, 1]
    assert reopened.append(payload(9)) == 2  # the torn record's id was never published; reused slot


def test_geometry_change_migrates_pending_records(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    box = Outbox(flash, budget_bytes=16 + 8 * 200, slot_size=200)
    for i in range(5):
        box.append(payload(i))
    box.ack(0)
    box.close()
    bigger = Outbox(flash, budget_bytes=16 + 20 * 300, slot_size=300)
    assert bigger.capacity() == 20
    assert [bigger.read(r) for r in bigger.pending()] == [payload(i) for i in (1, 2, 3, 4)]
    assert not (tmp_path / "outbox.dat.new").exists()


def test_seqstore_never_reuses_after_crash_between_reservation_and_use(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    store = SeqStore(flash, block=10)
    first = [store.next() for _ in range(3)]
    assert first == [0, 1, 2]
    assert decode_record(flash.read("seq.dat")) == 10  # block reserved before 0 was handed out
    # crash: the process dies here; the next boot must not hand out 0..9 again
    after_crash = SeqStore(flash, block=10)
    assert after_crash.next() == 10
    used = set(first) | {10} | {after_crash.next() for _ in range(25)}
    assert len(used) == 29
    # crash in the middle of a reservation: a half-written temp file beside the good record
    (tmp_path / "seq.dat.tmp").write_bytes(b"\x00\x00")
    resumed = SeqStore(flash, block=10)
    assert resumed.next() not in used and resumed.next() > max(used)
    # FAT-style crash after removing the old record but before the rename: the temp file is complete
    record = flash.read("seq.dat")
    assert record is not None
    os.remove(tmp_path / "seq.dat")
    (tmp_path / "seq.dat.tmp").write_bytes(record)
    assert SeqStore(flash, block=10).next() == decode_record(record)


def test_seqstore_refuses_a_damaged_record(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    SeqStore(flash).next()
    raw = bytearray((tmp_path / "seq.dat").read_bytes())
    raw[3] ^= 0x40
    (tmp_path / "seq.dat").write_bytes(bytes(raw))
    with pytest.raises(SeqStoreError, match="damaged"):
        SeqStore(flash)


def test_boot_counter_counts_each_boot_once_and_survives_reboot(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    boots = [BootCounter(flash).boot for _ in range(3)]  # three power-ups on the same flash
    assert boots == [0, 1, 2]
    assert decode_record(flash.read("boot.dat")) == 2  # written before the boot's number is used
    # a crash in the middle of the write: a torn temp file beside the good record changes nothing
    (tmp_path / "boot.dat.tmp").write_bytes(b"\x00\x01")
    assert BootCounter(flash).boot == 3
    # FAT-style crash after removing the old record but before the rename: the temp file is complete
    record = flash.read("boot.dat")
    assert record is not None
    os.remove(tmp_path / "boot.dat")
    (tmp_path / "boot.dat.tmp").write_bytes(record)
    assert BootCounter(flash).boot == 4
    assert BootCounter(FlashDir(str(tmp_path / "other"))).boot == 0  # its own file per flash


def test_boot_counter_refuses_a_damaged_record(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    BootCounter(flash)
    raw = bytearray((tmp_path / "boot.dat").read_bytes())
    raw[7] ^= 0x01
    (tmp_path / "boot.dat").write_bytes(bytes(raw))
    with pytest.raises(SeqStoreError, match="damaged"):
        BootCounter(flash)


def test_device_key_generated_once_from_rng_and_only_public_key_exported(tmp_path: Path) -> None:
    port = HostPort(str(tmp_path))
    key = DeviceKey(port)
    assert key.created
    again = DeviceKey(HostPort(str(tmp_path)))
    assert not again.created and again.public_key == key.public_key
    assert len(key.public_key) == 65 and key.public_key[0] == 4
    assert bytes.fromhex(key.public_key_hex()) == key.public_key
    stored = (tmp_path / "device_key.bin").read_bytes()
    assert p256.public_key(p256.private_key_from_bytes(stored[4:44])) == key.public_key
    assert not any(name for name in dir(key) if "private" in name or name in ("seed", "d"))
    reading = Reading("dev-k", 1, 1_700_000_000, "0.1.0", co2_ppm=600)
    assert verify_reading(key.sign_reading(reading), key.public_key) == reading
    other = DeviceKey(HostPort(str(tmp_path / "other")))
    assert other.public_key != key.public_key
    (tmp_path / "device_key.bin").write_bytes(stored[:-1] + bytes([stored[-1] ^ 1]))
    with pytest.raises(KeyStoreError, match="damaged"):
        DeviceKey(port)


def test_clock_before_and_after_ntp_sync(tmp_path: Path) -> None:
    port = HostPort(str(tmp_path), synced=False, ntp_available=False)
    clock = Clock(port, retry_interval_ms=0)
    timestamp, flags = clock.now()
    assert flags == FLAG_TIME_NOT_SYNCED and 0 <= timestamp < 5
    assert not clock.sync_if_due()
    port.ntp_available = True
    assert clock.sync_if_due()
    timestamp, flags = clock.now()
    assert flags == 0 and abs(timestamp - port.wall_time()) <= 1 and timestamp > 1_700_000_000
    port.clock_offset_s = -3600  # the wall clock jumps back an hour: readings follow the clock
    assert clock.now()[0] <= timestamp - 3599


def test_clock_stamp_has_no_wall_time_before_the_sync_and_uptime_always(tmp_path: Path) -> None:
    port = HostPort(str(tmp_path), synced=False, ntp_available=False)
    clock = Clock(port, retry_interval_ms=0)
    timestamp, flags, up = clock.stamp()
    assert (timestamp, flags) == (None, FLAG_TIME_NOT_SYNCED) and 0 <= up < 5
    port.ntp_available = True
    assert clock.sync_if_due()
    timestamp, flags, up_after = clock.stamp()
    assert flags == 0 and timestamp is not None and timestamp > 1_700_000_000 and up_after >= up


def test_config_defaults_override_file_and_validation(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    settings = config.load(flash)
    assert settings["broker_port"] == 1883 and settings["meter"] == "pzem"
    (tmp_path / "config.json").write_text(
        json.dumps({"wifi_ssid": "lab", "wifi_password": "hunter2", "meter": "s0", "site_id": "plant-7"})
    )
    settings = config.load(flash, {"device_id": "dev-9"})
    assert (settings["meter"], settings["site_id"], settings["device_id"]) == ("s0", "plant-7", "dev-9")
    assert config.redacted(settings)["wifi_password"] == "***" and settings["wifi_password"] == "hunter2"
    for bad in ({"meter": "modbus"}, {"site_id": "a/b"}, {"broker_port": 0}, {"colour": 1}, {"device_id": "x y"}):
        with pytest.raises(config.ConfigError):
            config.load(flash, bad)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(config.ConfigError, match="JSON"):
        config.load(flash)


def test_struct_layout_documented_in_outbox_matches_file(tmp_path: Path) -> None:
    flash = FlashDir(str(tmp_path))
    box = Outbox(flash, budget_bytes=16 + 3 * 100, slot_size=100)
    box.append(b"abc")
    box.close()
    raw = (tmp_path / "outbox.dat").read_bytes()
    assert raw[:16] == b"CTOB\x01\x00" + struct.pack(">HI", 100, 3) + b"\x00" * 4
    state, magic, length, record_id, dropped, crc = struct.unpack(">BBHIII", raw[16:32])
    assert (state, magic, length, record_id, dropped) == (0xA5, 0x5A, 3, 0, 0)
    assert crc == crc32(b"abc", crc32(raw[17:28]))
    assert raw[32:35] == b"abc"
