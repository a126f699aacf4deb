"""Base class of every sensor driver error. MicroPython-safe.

Each driver raises its own subclasses (``SCD4XError``, ``PZEMError``, ``S0Error``); an application that only
needs to know "this sensor failed this cycle" catches ``SensorError``. The message always names the device
and its bus address, e.g. ``SCD4x at I2C 0x62: CRC mismatch in word 1 of the reply to command 0xec05``.
"""


class SensorError(Exception):
    """``device`` (e.g. "SCD4x"), ``bus`` (e.g. "I2C"), ``address`` (int or None) and ``detail`` (text)."""

    def __init__(self, device, bus, address, detail):
        self.device = device
        self.bus = bus
        self.address = address
        self.detail = detail
        if address is None:
            where = bus
        else:
            where = "%s 0x%02x" % (bus, address)
        super().__init__("%s at %s: %s" % (device, where, detail))
