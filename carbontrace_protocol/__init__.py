"""CarbonTrace protocol core, shared by the firmware, the edge gateway and the cloud.

MicroPython-safe modules (the firmware ships them): ``errors``, ``cbor``, ``p256``, ``cose``,
``reading``, ``merkle``, ``topics``. CPython-only modules: ``verify`` (OpenSSL through ``cryptography``) and
``cid`` (IPFS content ids). This file imports nothing, so the device can import any one module alone.
"""
