"""`carbontrace decode`: the installed console script, run as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading

KEY = p256.private_key_from_bytes(bytes(range(32)))
PUB = p256.public_key(KEY)


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("carbontrace", path=str(Path(sys.executable).parent))
    assert exe, "the carbontrace console script is installed in the venv"
    return subprocess.run([exe, *args], input=stdin, capture_output=True, timeout=60)


def test_decode_and_verify(tmp_path: Path) -> None:
    signed = sign_reading(Reading("dev-9", 7, 1700000000, "1.2", temperature_centi_c=-505, co2_ppm=800), KEY)
    path = tmp_path / "r.cose"
    path.write_bytes(signed)
    out = run("decode", str(path), "--public-key", PUB.hex())
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["verification"]["status"] == "verified"
    assert doc["reading"]["values"]["temp"] == {"value": "-5.05", "unit": "Cel"}
    assert doc["reading"]["seq"] == 7 and doc["cose"]["kid"] == "dev-9"
    # hex on stdin, no key: decoded, not checked
    out = run("decode", "-", stdin=signed.hex().encode())
    assert out.returncode == 0
    assert json.loads(out.stdout)["verification"]["status"] == "not_checked"


def test_decode_reports_the_failure(tmp_path: Path) -> None:
    signed = bytearray(sign_reading(Reading("dev-9", 7, 1700000000, "1.2"), KEY))
    signed[-3] ^= 1
    path = tmp_path / "bad.cose"
    path.write_bytes(bytes(signed))
    out = run("decode", str(path), "-k", PUB.hex())
    assert out.returncode == 1
    assert json.loads(out.stdout)["verification"]["reason"] == "bad_signature"
    path.write_bytes(b"\xff\xfe not CBOR")
    out = run("decode", str(path))
    assert out.returncode == 1
    assert json.loads(out.stdout)["verification"]["reason"] == "malformed_cbor"
    assert run("decode", str(tmp_path / "missing")).returncode == 2


def test_decode_shows_an_unsynced_reading_with_its_boot_clock(tmp_path: Path) -> None:
    reading = Reading("dev-9", 8, None, "0.4.0", flags=1, co2_ppm=800, boot=3, up=42)
    out = run("decode", "-", "--public-key", PUB.hex(), stdin=sign_reading(reading, KEY).hex().encode())
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)["reading"]
    assert (doc["timestamp"], doc["format"], doc["boot"], doc["up"]) == (None, 2, 3, 42)
    assert doc["flags"] == ["time_not_synced"]
