"""The chamber flux under real MicroPython (WebAssembly port 1.27): the same samples give CPython's record and
signed bytes, byte for byte, and the conformance set's accepted messages (docs/conformance/flux/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbontrace_protocol import flux
from carbontrace_protocol.verify import verify_flux
from tests.conftest import REPO_ROOT
from tests.micropython.mp_runner import run_micropython_ok, stage_protocol
from tests.micropython.test_mp_protocol import parse_lines, run_cpython

pytestmark = pytest.mark.timeout(180)

CASES_DIR = Path(REPO_ROOT) / "docs" / "conformance" / "flux"
ACCEPTED = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(CASES_DIR.glob("valid-*.json"))]
SEED = b"carbontrace flux conformance"  # the conformance set's device key (tests/protocol/make_flux_conformance.py)


def flux_script() -> str:
    """Compute and sign every accepted case from its samples; runs unchanged in MicroPython and CPython."""
    cases = [
        (c["expected"]["record"]["device"], c["expected"]["record"]["fw"], c["expected"]["record"]["session"],
         c["expected"]["record"]["seq"], [tuple(s) for s in c["samples"]], c["chamber"])
        for c in ACCEPTED
    ]
    return (
        "import binascii, hashlib\n"
        "from carbontrace_protocol import flux, p256\n"
        f"key = p256.private_key_from_bytes(hashlib.sha256({SEED!r}).digest())\n"
        f"cases = {cases!r}\n"
        "for device, fw, session, seq, samples, chamber in cases:\n"
        "    record = flux.compute_flux(device, fw, session, seq, samples, chamber['volume_ml'],\n"
        "                               chamber['area_cm2'], chamber['temp_mc'], chamber['pressure_pa'])\n"
        "    print('signed', binascii.hexlify(flux.sign_flux(record, key)).decode())\n"
        "    print('isqrt', flux.isqrt((1 << 200) + 12345))\n"
    )


@pytest.fixture(scope="module")
def staged_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_protocol(tmp_path_factory.mktemp("mp-flux-lib"))


def test_micropython_signs_the_conformance_records_byte_for_byte(staged_lib: Path) -> None:
    assert (staged_lib / "flux.py").is_file()  # the manifest ships it to the device
    script = flux_script()
    micropython = parse_lines(run_micropython_ok(script, [staged_lib], timeout=150))
    cpython = parse_lines(run_cpython(script, staged_lib))
    assert micropython == cpython
    assert micropython["signed"] == [c["message"] for c in ACCEPTED]
    public = bytes.fromhex(ACCEPTED[0]["device_public_key"])
    for message in micropython["signed"]:
        assert isinstance(verify_flux(bytes.fromhex(message), public), flux.Flux)
    assert set(micropython["isqrt"]) == {str(1 << 100)}
