"""The outbox, sequence store, device key, config and MQTT packet encoding under real MicroPython (wasm),
byte-compared with CPython."""

from __future__ import annotations

import json
from pathlib import Path

from carbontrace_device import mqtt_client
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.outbox import Outbox

from carbontrace_protocol import p256
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, sign_reading
from carbontrace_protocol.retime import retimed_timestamp
from carbontrace_protocol.verify import verify_reading
from tests.micropython.mp_runner import DEVICE_PACKAGE_DIR, run_micropython_ok, stage_protocol

MP_CODE = r"""
import json
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.outbox import Outbox
from carbontrace_device.seqstore import BootCounter, SeqStore
from carbontrace_device.keystore import DeviceKey
from carbontrace_device.timekeeping import Clock
from carbontrace_device import mqtt_client, config
from carbontrace_protocol.reading import Reading

class Port:
    flash = FlashDir("/flash")
    ticks = 41500
    wall = None
    def random_bytes(self, n):
        return bytes(range(7, 7 + n))
    def ticks_ms(self):
        return self.ticks
    def ticks_diff(self, a, b):
        return a - b
    def wall_time(self):
        return self.wall

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
boots = [BootCounter(flash).boot for _ in range(3)]  # three power-ups
port = Port()
port.ticks = 0
clock = Clock(port)
port.ticks = 41500  # 41.5 s after boot, before any time sync
ts, flags, up = clock.stamp()
unsynced = key.sign_reading(Reading("dev-mp", 4, ts, "0.4.0", flags=flags, co2_ppm=701, boot=boots[-1], up=up))
port.ticks, port.wall = 100900, 1764126317  # synced
ts, flags, up = clock.stamp()
synced = key.sign_reading(Reading("dev-mp", 5, ts, "0.4.0", flags=flags, co2_ppm=702, boot=boots[-1], up=up))
out = {
    "pending": again.pending(),
    "dropped": again.dropped,
    "payloads": [again.read(r).decode() for r in again.pending()],
    "seq_first": first,
    "seq_after_crash": SeqStore(flash, block=5).next(),
    "outbox_file": open("/flash/outbox.dat", "rb").read().hex(),
    "pubkey": key.public_key_hex(),
    "cose": cose.hex(),
    "boots": boots,
    "boot_after": BootCounter(flash).boot,
    "unsynced": unsynced.hex(),
    "synced": synced.hex(),
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
    # the boot counter counts each power-up once, across "reboots" of the MicroPython flash
    assert mp["boots"] == [0, 1, 2] and mp["boot_after"] == 3
    # format-2 records built on MicroPython from its boot counter and clock, byte-identical to CPython's
    pub = p256.public_key(d)
    unsynced, synced = (verify_reading(bytes.fromhex(mp[k]), pub) for k in ("unsynced", "synced"))
    assert unsynced == Reading("dev-mp", 4, None, "0.4.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=701, boot=2, up=41)
    assert synced == Reading("dev-mp", 5, 1764126317, "0.4.0", co2_ppm=702, boot=2, up=100)
    assert mp["unsynced"] == sign_reading(unsynced, d).hex() and mp["synced"] == sign_reading(synced, d).hex()
    assert retimed_timestamp(unsynced, synced) == 1764126317 - 59
    assert mp["connect"] == mqtt_client.encode_connect(b"dev", False, 60, "u", "p", ("t", b"w", True, 1)).hex()
    assert mp["publish"] == "3b090003612f621234" + b"xy".hex()
    assert mp["remaining"] == "80808001"
