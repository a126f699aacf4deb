"""Every CRC vector of shared/vectors/crc against the firmware's crc.py (and the emulators' own copies).

pymodbus's ``compute_CRC`` integer is in wire order (low byte first, read big-endian); our functions return
the CRC-16/MODBUS register value, whose low byte goes first on the wire.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from carbontrace_device.crc import crc8_sensirion, crc16_modbus, modbus_crc_ok

from simulators import pzem_emulator, scd4x_emulator


def load(vectors: Path) -> dict[str, Any]:
    return json.loads((vectors / "crc" / "crc_vectors.json").read_text())


def test_check_values(vectors: Path) -> None:
    data = load(vectors)
    check = b"123456789"
    assert crc8_sensirion(check) == int(data["sensirion_crc8"]["algorithm"]["check_123456789"], 16)
    assert crc16_modbus(check) == int(data["modbus_crc16"]["algorithm"]["check_123456789"], 16)
    assert scd4x_emulator.crc8(check) == 0xF7
    assert pzem_emulator.crc16_modbus(check) == 0x4B37


def test_every_sensirion_vector(vectors: Path) -> None:
    cases = load(vectors)["sensirion_crc8"]["vectors"]
    assert len(cases) >= 7
    for case in cases:
        data = bytes.fromhex(case["data_hex"])
        want = int(case["crc_hex"], 16)
        assert crc8_sensirion(data) == want, case
        assert scd4x_emulator.crc8(data) == want, case
        # the start/end form checks a word inside a larger buffer without slicing
        framed = b"\x00\x11" + data + b"\x22"
        assert crc8_sensirion(framed, 2, 4) == want, case


def test_every_modbus_vector(vectors: Path) -> None:
    cases = load(vectors)["modbus_crc16"]["vectors"]
    kinds = {case["kind"] for case in cases}
    assert kinds == {"crc_only", "frame", "frame_invalid"}
    checked = 0
    for case in cases:
        if case["kind"] == "crc_only":
            data = bytes.fromhex(case["data_hex"])
            register = int(case["crc16_register_hex"], 16)
            assert crc16_modbus(data) == register, case
            assert pzem_emulator.crc16_modbus(data) == register, case
            wire = bytes.fromhex(case["wire_bytes_hex"])
            assert bytes((register & 0xFF, register >> 8)) == wire, case
        elif case["kind"] == "frame":
            frame = bytes.fromhex(case["frame_hex"])
            body, wire = frame[:-2], frame[-2:]
            assert wire == bytes.fromhex(case["crc_wire_bytes_hex"]), case
            register = crc16_modbus(body)
            assert bytes((register & 0xFF, register >> 8)) == wire, case
            assert crc16_modbus(frame) == 0, case
            assert modbus_crc_ok(frame), case
            assert pzem_emulator.with_crc(body) == frame, case
        else:
            frame = bytes.fromhex(case["frame_hex"])
            assert not modbus_crc_ok(frame), case
            assert crc16_modbus(frame) != 0, case
        checked += 1
    assert checked == len(cases)


def test_pymodbus_byte_order_remark() -> None:
    from pymodbus.framer.rtu import FramerRTU

    data = bytes.fromhex("1234234534564567")
    register = crc16_modbus(data)
    assert register == 0xDBE2
    assert FramerRTU.compute_CRC(data) == 0xE2DB == ((register & 0xFF) << 8) | (register >> 8)


@pytest.mark.parametrize("length", [0, 1, 2, 5, 64])
def test_crc16_matches_pymodbus_on_random_data(length: int) -> None:
    import random

    from pymodbus.framer.rtu import FramerRTU

    rng = random.Random(length)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(length))
        register = crc16_modbus(data)
        assert FramerRTU.compute_CRC(data) == ((register & 0xFF) << 8) | (register >> 8)
