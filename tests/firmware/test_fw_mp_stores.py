"""The outbox, sequence store, device key, config and MQTT packet encoding under real MicroPython (wasm),
byte-compared with CPython."""

from __future__ import annotations

import json
from pathlib import Path

from carbontrace_device import mqtt_client
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.outbox import Outbox

from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading
from tests.micropython.mp_runner import DEVICE_PACKAGE_DIR, run_micropython_ok, stage_protocol

MP_CODE = r"""
import json
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.outbox import Outbox
from carbontrace_device.seqstore import SeqStore
from carbontrace_device.keystore import DeviceKey
from carbontrace_device import mqtt_client, config
from carbontrace_protocol.reading import Reading

class Port:
    flash = FlashDir("/flash")
    def random_bytes(self, n):
        return bytes(range(7, 7 + n))

flash = Port.flash
box = Outbox(flash, budget_bytes=16 + 4 * 100, slot_size=100)
for i in range(6):
    box.append(b"r%d" % i)
box.ack(3)
again = Outbox(flash, budget_bytes=16 + 4 * 100, slot_size=100)
seq = SeqStore(flash, block=5)
first = [seq.next() for _ in range(7)]
key = DeviceKey(Port())
cose = key.sign_reading(Reading("dev-mp", 3, 1700000000, "0.1.0", co2_ppm=700))
out = {
    "pending": again.pending(),
    "dropped": again.dropped,
    "payloads": [again.read(r).decode() for r in again.pending()],
    "seq_first": first,
    "seq_after_crash": SeqStore(flash, block=5).next(),
    "outbox_file": open("/flash/outbox.dat", "rb").read().hex(),
    "pubkey": key.public_key_hex(),
    "cose": cose.hex(),
    "connect": mqtt_client.encode_connect(b"dev", False, 60, "u", "p", ("t", b"w", True, 1)).hex(),
    "publish": mqtt_client.encode_publish("a/b", b"xy", 1, True, 0x1234, True).hex(),
    "remaining": mqtt_client.encode_remaining_length(2097152).hex(),
    "port": config.load(flash)["broker_port"],
}
print(json.dumps(out))
"""


def test_stores_and_packets_match_cpython_under_micropython(tmp_path: Path) -> None:
    stage_protocol(tmp_path / "lib")
    stdout = run_micropython_ok(MP_CODE, libs=[tmp_path / "lib" / "carbontrace_protocol", DEVICE_PACKAGE_DIR])
    mp = json.loads(stdout.strip().splitlines()[-1])
    assert mp["pending"] == [2, 4, 5] and mp["dropped"] == 2
    assert mp["payloads"] == ["r2", "r4", "r5"]
    assert mp["seq_first"] == list(range(7)) and mp["seq_after_crash"] == 10
    assert mp["port"] == 1883
    # the same operations in CPython write the same outbox file, byte for byte
    flash = FlashDir(str(tmp_path / "cpython"))
    box = Outbox(flash, budget_bytes=16 + 4 * 100, slot_size=100)
    for i in range(6):
        box.append(b"r%d" % i)
    box.ack(3)
    box.close()
    assert mp["outbox_file"] == (tmp_path / "cpython" / "outbox.dat").read_bytes().hex()
    assert mp["pubkey"] == p256.public_key(p256.private_key_from_bytes(bytes(range(7, 47)))).hex()
    # RFC 6979 nonces: the device's signature is byte-identical to CPython's with the same key
    d = p256.private_key_from_bytes(bytes(range(7, 47)))
    assert mp["cose"] == sign_reading(Reading("dev-mp", 3, 1700000000, "0.1.0", co2_ppm=700), d).hex()
    assert mp["connect"] == mqtt_client.encode_connect(b"dev", False, 60, "u", "p", ("t", b"w", True, 1)).hex()
    assert mp["publish"] == "3b090003612f621234" + b"xy".hex()
    assert mp["remaining"] == "80808001"
