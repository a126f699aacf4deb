"""An emulated I2C bus that speaks both MicroPython's ``machine.I2C`` and CircuitPython's ``busio.I2C``.

Targets (emulated chips) attach at 7-bit addresses and see whole transfers: ``i2c_write(data)`` for a write
(START, address+W, bytes, STOP) and ``i2c_read(n)`` for a read. A target refuses a transfer by raising
``I2CNack``; the bus turns that into ``OSError`` as the real buses do: ``ENODEV`` (19) when the address was
not acknowledged (no chip, chip busy or asleep), ``EIO`` (5) when a data byte was not acknowledged.

MicroPython's soft I2C does not raise for a NACKed data byte but returns the number of ACKs from
``writeto``; ``I2CBus(data_nack="count")`` behaves that way, for drivers that must cope with both.

Every transfer is recorded in ``transfers`` (emulated time, direction, address, bytes, error), so tests can
assert the exact bytes a driver sent and when.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

ReadableBuffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview


class I2CNack(Exception):
    """Raised by a target to refuse a transfer. ``acked``: data bytes acknowledged before the NACK."""

    def __init__(self, err: int, reason: str, acked: int = 0) -> None:
        super().__init__(reason)
        self.errno = err
        self.reason = reason
        self.acked = acked


def address_nack(reason: str) -> I2CNack:
    return I2CNack(errno.ENODEV, reason)


def data_nack(reason: str, acked: int = 0) -> I2CNack:
    return I2CNack(errno.EIO, reason, acked)


class I2CTarget(Protocol):
    def i2c_probe(self) -> bool:
        """True when the chip acknowledges its address (what ``scan`` and empty writes see)."""
        ...

    def i2c_write(self, data: bytes) -> None: ...

    def i2c_read(self, nbytes: int) -> bytes: ...


@dataclass(frozen=True)
class Transfer:
    time: float
    direction: Literal["write", "read"]
    address: int
    data: bytes
    error: str | None = None  # why the transfer was refused
    errno: int | None = None  # the OSError errno the bus raised for it


class I2CBus:
    """The bus. ``clock`` stamps the transfer log (seconds)."""

    def __init__(
        self,
        targets: dict[int, I2CTarget] | None = None,
        *,
        data_nack: Literal["raise", "count"] = "raise",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets: dict[int, I2CTarget] = dict(targets or {})
        self._locked = False
        self.data_nack = data_nack
        self._log_clock = clock
        self.transfers: list[Transfer] = []

    # -- topology -------------------------------------------------------------------------------------------

    def attach(self, address: int, target: I2CTarget) -> None:
        if not 0x08 <= address <= 0x77:
            raise ValueError(f"7-bit I2C address 0x08..0x77 expected, got {address:#x}")
        if address in self._targets:
            raise ValueError(f"address {address:#04x} is taken")
        self._targets[address] = target

    def detach(self, address: int) -> None:
        del self._targets[address]

    def writes(self, address: int | None = None) -> list[bytes]:
        """The bytes of every successful write (to ``address``), in order."""
        return [
            t.data
            for t in self.transfers
            if t.direction == "write" and t.error is None and (address is None or t.address == address)
        ]

    # -- MicroPython machine.I2C and CircuitPython busio.I2C ----------------------------------------------

    def scan(self) -> list[int]:
        return sorted(a for a, t in self._targets.items() if t.i2c_probe())

    def writeto(
        self, addr: int, buf: ReadableBuffer, stop: bool = True, *, start: int = 0, end: int | None = None
    ) -> int:
        data = bytes(memoryview(buf)[start:end])
        target = self._targets.get(addr)
        if target is None:
            self._record("write", addr, data, "no device", errno.ENODEV)
            raise OSError(errno.ENODEV, f"no I2C device at {addr:#04x}")
        try:
            if data:
                target.i2c_write(data)
            elif not target.i2c_probe():
                raise address_nack("address not acknowledged")
        except I2CNack as nack:
            self._record("write", addr, data, nack.reason, nack.errno)
            if nack.errno == errno.EIO and self.data_nack == "count":
                return nack.acked
            raise OSError(nack.errno, f"I2C {addr:#04x}: {nack.reason}") from None
        self._record("write", addr, data)
        return len(data)

    def readfrom_into(
        self, addr: int, buf: WritableBuffer, stop: bool = True, *, start: int = 0, end: int | None = None
    ) -> None:
        view = memoryview(buf)
        if end is None:
            end = len(view)
        nbytes = end - start
        target = self._targets.get(addr)
        if target is None:
            self._record("read", addr, b"", "no device", errno.ENODEV)
            raise OSError(errno.ENODEV, f"no I2C device at {addr:#04x}")
        try:
            data = target.i2c_read(nbytes)
        except I2CNack as nack:
            self._record("read", addr, b"", nack.reason, nack.errno)
            raise OSError(nack.errno, f"I2C {addr:#04x}: {nack.reason}") from None
        if len(data) != nbytes:
            raise AssertionError(f"target returned {len(data)} bytes for a {nbytes}-byte read")
        view[start:end] = data
        self._record("read", addr, data)

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out: ReadableBuffer,
        buffer_in: WritableBuffer,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        self.writeto(address, buffer_out, start=out_start, end=out_end)
        self.readfrom_into(address, buffer_in, start=in_start, end=in_end)

    def try_lock(self) -> bool:
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self) -> None:
        self._locked = False

    def deinit(self) -> None:
        self._locked = False

    def __enter__(self) -> I2CBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deinit()

    def _record(
        self,
        direction: Literal["write", "read"],
        addr: int,
        data: bytes,
        error: str | None = None,
        err: int | None = None,
    ) -> None:
        self.transfers.append(Transfer(self._log_clock(), direction, addr, data, error, err))
