"""The device key: generated on the device, kept in flash, never exported. MicroPython-safe.

On first boot 40 bytes from the hardware RNG (``port.random_bytes``) become the P-256 private key
(``p256.private_key_from_bytes``: 40 bytes leave a negligible modular bias). The seed is stored in
``device_key.bin`` as ``"CTK1" | seed (40 bytes) | CRC-32 (u32, big-endian)`` via an atomic replace.
Only the public key leaves the device (65-byte SEC1, hex) for registration with the gateway; this class
has no method that returns the private key or seed.

A damaged key file raises ``KeyStoreError`` instead of silently making a new identity: a new key
means re-registering the device, which an operator must decide (delete the file to do it).
"""

import struct

from carbontrace_device.outbox import crc32
from carbontrace_protocol import p256
from carbontrace_protocol.flux import sign_flux
from carbontrace_protocol.reading import sign_reading

KEY_FILE = "device_key.bin"
_MAGIC = b"CTK1"
SEED_BYTES = 40


class KeyStoreError(Exception):
    pass


def _encode(seed):
    body = _MAGIC + seed
    return body + struct.pack(">I", crc32(body))


class DeviceKey:
    def __init__(self, port, name=KEY_FILE):
        data = port.flash.read(name)
        if data is None:
            seed = port.random_bytes(SEED_BYTES)
            if len(seed) != SEED_BYTES:
                raise KeyStoreError("hardware RNG returned %d bytes, wanted %d" % (len(seed), SEED_BYTES))
            port.flash.write_atomic(name, _encode(seed))
            self.created = True
        else:
            size = len(_MAGIC) + SEED_BYTES + 4
            if len(data) != size or data[:4] != _MAGIC or struct.unpack(">I", data[-4:])[0] != crc32(data[:-4]):
                raise KeyStoreError("device key file %s is damaged" % port.flash.path(name))
            seed = data[4 : 4 + SEED_BYTES]
            self.created = False
        self._d = p256.private_key_from_bytes(seed)
        self.public_key = p256.public_key(self._d)

    def public_key_hex(self):
        return "".join("%02x" % b for b in self.public_key)

    def sign_reading(self, reading):
        """The COSE_Sign1 bytes of ``reading``, signed with the device key."""
        return sign_reading(reading, self._d)

    def sign_flux(self, record):
        """The COSE_Sign1 bytes of a chamber flux record, signed with the same device key as the readings."""
        return sign_flux(record, self._d)
