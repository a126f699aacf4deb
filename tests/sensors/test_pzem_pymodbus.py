"""A real Modbus client (pymodbus 3, RTU framer, pyserial) reads the PZEM emulator over a pseudo-terminal."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusSerialClient
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from simulators.pzem_emulator import ConstantLoad, PtyServer, PZEMEmulator

pytestmark = pytest.mark.timeout(60)


class ResetEnergyRequest(ModbusPDU):
    """PZEM-004T function 0x42: reset the energy counter (no data; the reply echoes the function)."""

    function_code = 0x42
    rtu_frame_size = 4

    def encode(self) -> bytes:
        return b""

    def decode(self, data: bytes) -> None:
        pass


class ResetEnergyResponse(ResetEnergyRequest):
    pass


@pytest.fixture
def meter() -> Iterator[tuple[PZEMEmulator, PtyServer, ModbusSerialClient]]:
    emu = PZEMEmulator(load=ConstantLoad(1500.0, voltage_v=231.0, power_factor=0.9), time_scale=3600.0)
    with PtyServer(emu) as server:
        client = ModbusSerialClient(server.port, framer=FramerType.RTU, baudrate=9600, timeout=0.5, retries=1)
        client.register(ResetEnergyResponse)
        assert client.connect()
        try:
            yield emu, server, client
        finally:
            client.close()


def registers_to_values(regs: list[int]) -> dict[str, int]:
    return {
        "voltage_deci_v": regs[0],
        "current_milli_a": regs[1] | (regs[2] << 16),
        "power_deci_w": regs[3] | (regs[4] << 16),
        "energy_wh": regs[5] | (regs[6] << 16),
        "frequency_deci_hz": regs[7],
        "power_factor_centi": regs[8],
        "alarm": regs[9],
    }


def test_pymodbus_reads_input_registers(meter: tuple[PZEMEmulator, PtyServer, ModbusSerialClient]) -> None:
    emu, _server, client = meter
    time.sleep(0.2)  # 720 emulated seconds at 1500 W: 300 Wh
    result = client.read_input_registers(0, count=10, device_id=1)
    assert not result.isError(), result
    values = registers_to_values(list(result.registers))
    assert values["voltage_deci_v"] == 2310
    assert values["current_milli_a"] == round(1500 / (231 * 0.9) * 1000)
    assert values["power_deci_w"] == 15000
    assert values["frequency_deci_hz"] == 500
    assert values["power_factor_centi"] == 90
    assert values["alarm"] == 0
    # energy: what the emulator's register held when it answered
    request = emu.requests[-1]
    assert request.frame == bytes.fromhex("01040000000a700d")
    assert request.reply is not None
    reply_regs = [(request.reply[3 + 2 * i] << 8) | request.reply[4 + 2 * i] for i in range(10)]
    assert values == registers_to_values(reply_regs)
    assert values["energy_wh"] >= 250
    again = registers_to_values(list(client.read_input_registers(0, count=10, device_id=1).registers))
    assert again["energy_wh"] >= values["energy_wh"]


def test_pymodbus_sees_the_energy_reset(meter: tuple[PZEMEmulator, PtyServer, ModbusSerialClient]) -> None:
    emu, _, client = meter
    time.sleep(0.2)
    before = registers_to_values(list(client.read_input_registers(0, count=10, device_id=1).registers))
    assert before["energy_wh"] > 0
    reply = client.execute(False, ResetEnergyRequest(dev_id=1))
    assert not reply.isError() and reply.function_code == 0x42
    assert emu.energy_resets == 1
    assert emu.requests[-1].frame == bytes.fromhex("01428011")
    reset_at = emu.requests[-1].time
    after = registers_to_values(list(client.read_input_registers(0, count=10, device_id=1).registers))
    read_at = emu.requests[-1].time
    assert after["energy_wh"] < before["energy_wh"]
    # only what accrued since the reset: 1500 W over the emulated time between the two requests
    assert abs(after["energy_wh"] - 1500 * (read_at - reset_at) / 3600) <= 1


def test_pymodbus_holding_registers_and_exceptions(
    meter: tuple[PZEMEmulator, PtyServer, ModbusSerialClient],
) -> None:
    emu, _server, client = meter
    result = client.read_holding_registers(1, count=2, device_id=1)
    assert not result.isError()
    assert list(result.registers) == [23000, 1]
    assert not client.write_register(1, 1000, device_id=1).isError()
    assert emu.alarm_threshold_w == 1000
    alarm = client.read_input_registers(9, count=1, device_id=1)
    assert list(alarm.registers) == [0xFFFF]  # 1500 W > 1000 W
    bad = client.read_input_registers(8, count=5, device_id=1)
    assert bad.isError() and bad.exception_code == 0x02
    bad = client.read_coils(0, count=1, device_id=1)
    assert bad.isError() and bad.exception_code == 0x01
    # the general address 0xF8 reaches the single meter whatever its address
    result = client.read_holding_registers(2, count=1, device_id=0xF8)
    assert list(result.registers) == [1]


def test_pymodbus_gets_silence_from_another_slave_address(
    meter: tuple[PZEMEmulator, PtyServer, ModbusSerialClient],
) -> None:
    emu, _, client = meter
    from pymodbus.exceptions import ModbusIOException

    started = time.monotonic()
    try:
        result = client.read_input_registers(0, count=10, device_id=7)
        assert result.isError()
    except ModbusIOException:
        pass
    assert time.monotonic() - started >= 0.45  # the client waited out its timeout
    assert emu.requests[-1].reply is None
