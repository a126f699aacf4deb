"""The device's chamber session under real MicroPython (wasm): the same readings give CPython's signed flux
record, byte for byte, through carbontrace_device/chamber.py, the device key and the flux outbox."""

from __future__ import annotations

import json
from pathlib import Path

from carbontrace_device.chamber import ChamberSession
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.outbox import Outbox

from carbontrace_protocol import flux, p256
from carbontrace_protocol.verify import verify_flux
from tests.micropython.mp_runner import DEVICE_PACKAGE_DIR, run_micropython_ok, stage_protocol

# readings of a greenhouse bay: CO2 falling, one fault cycle (no CO2) inside the session, one after its end
SESSION = r"""
from carbontrace_device.chamber import ChamberSession, ChamberFailed
from carbontrace_protocol.reading import Reading, FLAG_CO2_SENSOR_FAULT

def session_readings():
    out = []
    for i in range(40):
        t = 1764126000 + 5 * i
        if i == 7:
            out.append(Reading("gh-bay-3", 100 + i, t, "0.5.0", flags=FLAG_CO2_SENSOR_FAULT))
        else:
            co2 = 520 - (3 * i) // 2 + (i * 7919) % 5 - 2
            out.append(Reading("gh-bay-3", 100 + i, t, "0.5.0", co2_ppm=co2, temperature_centi_c=2650 + i % 3))
    return out

def run_session():
    session = ChamberSession(1764126000, 180, 600000000, 2000000, 101200)
    for r in session_readings():
        session.add(r)
    return session
"""

MP_CODE = SESSION + r"""
import json
from carbontrace_device.flashfs import FlashDir
from carbontrace_device.keystore import DeviceKey
from carbontrace_device.outbox import Outbox

class Port:
    flash = FlashDir("/flash")
    def random_bytes(self, n):
        return bytes(range(9, 9 + n))

session = run_session()
record = session.flux("gh-bay-3", "0.5.0")
signed = DeviceKey(Port()).sign_flux(record)
box = Outbox(Port.flash, "flux_outbox.dat", budget_bytes=16 + 4 * 544, slot_size=544)
box.append(signed)
short = ChamberSession(1764126000, 180, 20000, 1000, 101325)
try:
    short.flux("gh-bay-3", "0.5.0")
    failed = None
except ChamberFailed as err:
    failed = err.reason
print(json.dumps({"signed": signed.hex(), "skipped": session.skipped, "seq": [session.first_seq, session.last_seq],
                  "outbox": open("/flash/flux_outbox.dat", "rb").read().hex(), "failed": failed}))
"""


def test_a_chamber_session_signs_the_same_flux_under_micropython(tmp_path: Path) -> None:
    stage_protocol(tmp_path / "lib")
    stdout = run_micropython_ok(MP_CODE, libs=[tmp_path / "lib" / "carbontrace_protocol", DEVICE_PACKAGE_DIR])
    mp = json.loads(stdout.strip().splitlines()[-1])
    namespace: dict[str, object] = {}
    exec(SESSION, namespace)  # the same readings in CPython
    session = namespace["run_session"]()  # type: ignore[operator]
    assert isinstance(session, ChamberSession)
    record = session.flux("gh-bay-3", "0.5.0")
    key = p256.private_key_from_bytes(bytes(range(9, 49)))
    assert mp["signed"] == flux.sign_flux(record, key).hex()
    verified = verify_flux(bytes.fromhex(mp["signed"]), p256.public_key(key))
    # 37 readings in [0, 180] s, the fault cycle is in the range but no sample, the last three are after the end
    assert mp["seq"] == [100, 136] and verified.seq == [100, 136] and verified.n == 36 and mp["skipped"] == 1
    assert verified.flux_e3 < 0 and verified.qa == flux.QA_OK  # a greenhouse bay taking CO2 up
    assert mp["failed"] == "too_few_samples"
    flash = FlashDir(str(tmp_path / "cpython"))
    box = Outbox(flash, "flux_outbox.dat", budget_bytes=16 + 4 * 544, slot_size=544)
    box.append(bytes.fromhex(mp["signed"]))
    box.close()
    assert mp["outbox"] == (tmp_path / "cpython" / "flux_outbox.dat").read_bytes().hex()
