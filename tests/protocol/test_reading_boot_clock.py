"""Reading format 2 (boot counter and seconds since boot) and re-timing an unsynced reading from a reference."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest

from carbontrace_protocol import cbor, errors, p256
from carbontrace_protocol.reading import (
    FLAG_TIME_NOT_SYNCED,
    FORMAT_BOOT_CLOCK,
    FORMAT_VERSION,
    MAX_BOOT,
    Reading,
    decode_payload,
    sign_reading,
)
from carbontrace_protocol.retime import (
    BAD_REFERENCE,
    BEFORE_FLOOR,
    DIFFERENT_BOOT,
    DIFFERENT_DEVICE,
    INCONSISTENT_UP,
    NOT_UNSYNCED,
    RetimeRejected,
    retimed_timestamp,
)
from carbontrace_protocol.verify import verify_reading

KEY = p256.private_key_from_bytes(hashlib.sha256(b"boot clock test key").digest())
PUB = p256.public_key(KEY)
SYNCED_AT = 1764126317


def unsynced(seq: int = 3, boot: int = 7, up: int = 40, device: str = "dev-001") -> Reading:
    return Reading(device, seq, None, "0.4.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=600, boot=boot, up=up)


def synced(seq: int = 9, boot: int = 7, up: int = 400, timestamp: int = SYNCED_AT, device: str = "dev-001") -> Reading:
    return Reading(device, seq, timestamp, "0.4.0", co2_ppm=610, boot=boot, up=up)


def test_unsynced_reading_has_no_base_time_and_declares_format_2() -> None:
    reading = unsynced()
    pack = cbor2.loads(reading.encode())
    assert -3 not in pack[0]  # no bt: the time is absent, not 0 or 1970
    assert pack[1] == {0: "fmt", 2: FORMAT_BOOT_CLOCK}
    assert pack[4] == {0: "boot", 2: 7} and pack[5] == {0: "up", 1: "s", 2: 40}
    assert verify_reading(sign_reading(reading, KEY), PUB) == reading
    assert reading.unsynced and reading.timestamp is None and reading.format == FORMAT_BOOT_CLOCK


def test_synced_reading_with_boot_clock_keeps_its_wall_time() -> None:
    reading = synced()
    pack = cbor2.loads(reading.encode())
    assert pack[0][-3] == SYNCED_AT and pack[1][2] == FORMAT_BOOT_CLOCK
    assert decode_payload(reading.encode()) == reading and not reading.unsynced


def test_format_1_bytes_are_unchanged() -> None:
    # the worked example of docs/protocol.md is checked byte for byte elsewhere; here: no boot, still fmt 1
    reading = Reading("dev-001", 42, SYNCED_AT, "0.1.0", co2_ppm=612)
    pack = cbor2.loads(reading.encode())
    assert pack[1] == {0: "fmt", 2: FORMAT_VERSION} and len(pack) == 5
    assert "boot" not in reading.as_dict()


@pytest.mark.parametrize(
    "fields",
    [
        {"boot": 1, "up": None},  # both or neither
        {"boot": None, "up": 1},
        {"boot": -1, "up": 1},
        {"boot": MAX_BOOT + 1, "up": 1},
        {"boot": 1, "up": -1},
        {"boot": True, "up": 1},
        {"boot": 1, "up": 1.0},
    ],
)
def test_building_a_bad_boot_clock_fails(fields: dict[str, Any]) -> None:
    with pytest.raises(errors.MalformedReading):
        Reading("dev-001", 1, SYNCED_AT, "0.4.0", **fields)


def test_unsynced_format_2_must_not_carry_a_timestamp_and_synced_must() -> None:
    with pytest.raises(errors.MalformedReading):
        Reading("dev-001", 1, 5, "0.4.0", flags=FLAG_TIME_NOT_SYNCED, boot=1, up=5)
    with pytest.raises(errors.MalformedReading):
        Reading("dev-001", 1, None, "0.4.0", boot=1, up=5)
    with pytest.raises(errors.MalformedReading):
        Reading("dev-001", 1, None, "0.4.0", flags=FLAG_TIME_NOT_SYNCED)  # format 1 always has a time


def _pack_of(reading: Reading) -> list[dict[int, Any]]:
    return reading.to_senml()


def _mutated(mutate: Any, reading: Reading | None = None) -> bytes:
    pack = _pack_of(reading or unsynced())
    mutate(pack)
    return cbor.encode(pack)


def _set_bt(p: list[dict[int, Any]], value: Any) -> None:
    p[0][-3] = value


@pytest.mark.parametrize(
    ("name", "mutate", "reason"),
    [
        ("boot record missing", lambda p: p.pop(4), "missing_field"),
        ("up record missing", lambda p: p.pop(5), "missing_field"),
        ("up without a value", lambda p: p[5].pop(2), "missing_field"),
        ("up in another unit", lambda p: p[5].__setitem__(1, "ms"), "malformed_reading"),
        ("boot a text", lambda p: p[4].__setitem__(2, "7"), "malformed_reading"),
        ("up negative", lambda p: p[5].__setitem__(2, -1), "malformed_reading"),
        ("boot a bool", lambda p: p[4].__setitem__(2, True), "malformed_reading"),
        ("unsynced with a base time", lambda p: _set_bt(p, 40), "malformed_reading"),
        ("unsynced with a null base time", lambda p: _set_bt(p, None), "malformed_reading"),
        ("format 1 with a boot record", lambda p: (p[1].__setitem__(2, 1), _set_bt(p, 40)), "malformed_reading"),
        ("format 3", lambda p: p[1].__setitem__(2, 3), "malformed_reading"),
        ("format as bool", lambda p: p[1].__setitem__(2, True), "malformed_reading"),
        ("boot twice", lambda p: p.append({0: "boot", 2: 7}), "malformed_reading"),
        ("extra label in up", lambda p: p[5].__setitem__(3, "x"), "non_canonical"),
    ],
)
def test_every_format_2_defect_is_typed(name: str, mutate: Any, reason: str) -> None:
    with pytest.raises(errors.ProtocolError) as caught:
        decode_payload(_mutated(mutate))
    assert caught.value.reason == reason, name


def test_synced_format_2_without_base_time_is_rejected() -> None:
    def drop_bt(p: list[dict[int, Any]]) -> None:
        del p[0][-3]

    with pytest.raises(errors.MalformedReading):
        decode_payload(_mutated(drop_bt, synced()))


def test_retimed_from_the_reference_of_the_same_boot() -> None:
    assert retimed_timestamp(unsynced(up=40), synced(up=400)) == SYNCED_AT - 360
    assert retimed_timestamp(unsynced(seq=8, up=400), synced(seq=9, up=400)) == SYNCED_AT


@pytest.mark.parametrize(
    ("reading", "reference", "reason"),
    [
        (unsynced(boot=6), synced(boot=7), DIFFERENT_BOOT),
        (unsynced(device="dev-002"), synced(), DIFFERENT_DEVICE),
        (unsynced(up=401), synced(up=400), INCONSISTENT_UP),  # later in the boot than its reference
        (unsynced(seq=10), synced(seq=9), INCONSISTENT_UP),  # after the reference by seq
        (unsynced(seq=9), synced(seq=9), INCONSISTENT_UP),
        (synced(seq=1, up=10), synced(), NOT_UNSYNCED),
        (Reading("dev-001", 1, 40, "0.1.0", flags=FLAG_TIME_NOT_SYNCED), synced(), NOT_UNSYNCED),  # format 1
        (unsynced(), unsynced(seq=9, up=400), BAD_REFERENCE),
        (unsynced(), Reading("dev-001", 9, SYNCED_AT, "0.1.0"), BAD_REFERENCE),  # format 1: no up
        (unsynced(up=0), synced(up=400, timestamp=946684800 + 400), BEFORE_FLOOR),  # a board RTC at 2000
    ],
)
def test_retime_refusals_are_typed(reading: Reading, reference: Reading, reason: str) -> None:
    with pytest.raises(RetimeRejected) as caught:
        retimed_timestamp(reading, reference)
    assert caught.value.reason == reason
