"""The chamber flux on the MicroPython unix port, from the `make firmware` .mpy set, with the fixed GC heap of the
port's other tests: the device's session code (carbontrace_device/chamber.py) over the conformance set's
greenhouse samples computes and signs the very message of docs/conformance/flux/valid-greenhouse-uptake.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrace_protocol import flux
from carbontrace_protocol.verify import verify_flux
from tests.conftest import REPO_ROOT
from tests.micropython.mp_unix import run_unix_ok, unix_micropython
from tests.micropython.mpy_set import RuntimeMissing, build_mpy_set
from tests.micropython.test_mp_unix_port import UNIX_HEAPSIZE

pytestmark = pytest.mark.timeout(300)
CASE = json.loads((Path(REPO_ROOT) / "docs" / "conformance" / "flux" / "valid-greenhouse-uptake.json").read_text())
SEED = b"carbontrace flux conformance"  # the conformance set's device key (tests/protocol/make_flux_conformance.py)


def program() -> str:
    record = CASE["expected"]["record"]
    chamber = CASE["chamber"]
    first = record["seq"][0]
    readings = [(first + i, record["session"][0] + t, c) for i, (t, c) in enumerate(CASE["samples"])]
    return (
        "import binascii, hashlib\n"
        "from carbontrace_protocol import p256\n"
        "from carbontrace_protocol.reading import Reading\n"
        "from carbontrace_device.chamber import ChamberSession\n"
        f"key = p256.private_key_from_bytes(hashlib.sha256({SEED!r}).digest())\n"
        f"session = ChamberSession({record['session'][0]}, {record['session'][1] - record['session'][0]}, "
        f"{chamber['volume_ml']}, {chamber['area_cm2']}, {chamber['pressure_pa']})\n"
        f"for seq, ts, co2 in {readings!r}:\n"
        f"    session.add(Reading({record['device']!r}, seq, ts, {record['fw']!r}, co2_ppm=co2,\n"
        f"                        temperature_centi_c={chamber['temp_mc'] // 10}))\n"
        f"from carbontrace_protocol.flux import sign_flux\n"
        f"print('signed', binascii.hexlify(sign_flux(session.flux({record['device']!r}, {record['fw']!r}), key)).decode())\n"
    )


def test_the_unix_port_signs_the_conformance_flux_from_the_device_session(tmp_path: Path) -> None:
    try:
        unix_micropython()
        lib = build_mpy_set(tmp_path / "firmware")
    except RuntimeMissing as err:
        pytest.fail(str(err))
    assert (lib / "carbontrace_device" / "chamber.mpy").is_file() and (lib / "carbontrace_protocol" / "flux.mpy").is_file()
    assert CASE["chamber"]["temp_mc"] % 10 == 0  # the readings carry centi-°C
    stdout = run_unix_ok(program(), lib, UNIX_HEAPSIZE, tmp_path)
    signed = next(line.split()[1] for line in stdout.splitlines() if line.startswith("signed "))
    assert signed == CASE["message"]
    record = verify_flux(bytes.fromhex(signed), bytes.fromhex(CASE["device_public_key"]))
    assert record.flux_e3 < 0 and record.qa == flux.QA_OK
