"""Checksums of the sensor buses. MicroPython-safe, allocation-free.

* ``crc8_sensirion``: CRC-8 of the Sensirion I2C protocol (polynomial 0x31, init 0xFF, no reflection, no final
  XOR), computed over each 2-byte big-endian data word. ``crc8_sensirion(b"\\xbe\\xef") == 0x92``.
* ``crc16_modbus``: CRC-16/MODBUS (polynomial 0x8005 reflected = 0xA001, init 0xFFFF, no final XOR). It returns
  the CRC *register value*; on the wire the LOW byte goes first. ``crc16_modbus(b"123456789") == 0x4B37``.
  (pymodbus's ``FramerRTU.compute_CRC`` returns the two wire bytes read as a big-endian integer, i.e. the
  register value byte-swapped.)
"""


def crc8_sensirion(data, start=0, end=None):
    """CRC-8 (Sensirion) of ``data[start:end]``, without slicing (no allocation)."""
    if end is None:
        end = len(data)
    crc = 0xFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            if crc & 0x80:
                crc = ((crc << 1) ^ 0x31) & 0xFF
            else:
                crc = (crc << 1) & 0xFF
    return crc


def crc16_modbus(data, start=0, end=None):
    """CRC-16/MODBUS register value of ``data[start:end]`` (send ``crc & 0xFF`` first, then ``crc >> 8``)."""
    if end is None:
        end = len(data)
    crc = 0xFFFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def modbus_crc_ok(frame, length=None):
    """True when ``frame[:length]`` ends with its correct CRC (low byte first); a whole valid frame has CRC 0."""
    if length is None:
        length = len(frame)
    if length < 3:
        return False
    return crc16_modbus(frame, 0, length) == 0
