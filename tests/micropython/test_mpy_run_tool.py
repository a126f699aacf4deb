"""tools/mpy_run.mjs: exit codes, streams, stdin and the /lib layout it builds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.micropython.mp_runner import MPY_RUN, PROTOCOL_DIR, mem_report, node_binary, run_micropython

pytestmark = pytest.mark.timeout(60)


def run_tool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node_binary(), str(MPY_RUN), *args], input=stdin, capture_output=True, text=True, timeout=30, check=False,
    )


@pytest.mark.parametrize(
    ("code", "status", "stderr_part"),
    [
        ("print('fine')", 0, ""),
        ("import sys\nsys.exit(3)", 3, ""),
        ("raise SystemExit", 0, ""),
        ("raise SystemExit(None)", 0, ""),
        ("raise SystemExit('stopped: sensor missing')", 1, "stopped: sensor missing"),
        ("def f():\n    return 1 // 0\nf()", 1, "ZeroDivisionError"),
        ("def broken(:\n    pass", 1, "SyntaxError"),
    ],
)
def test_exit_status_follows_cpython_rules(code: str, status: int, stderr_part: str) -> None:
    result = run_micropython(code)
    assert result.returncode == status, result.stderr
    assert stderr_part in result.stderr


def test_traceback_names_the_script_file_and_line(tmp_path: Path) -> None:
    script = tmp_path / "boom.py"
    script.write_text(
        "import sys\nprint('before', sys.argv[1:])\n\ndef explode():\n    raise ValueError('x')\nexplode()\n"
    )
    result = run_tool(str(script), "a1", "b2")
    assert result.returncode == 1
    assert result.stdout == "before ['a1', 'b2']\n"
    assert f'File "{script}", line 5, in explode' in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: x")


def test_code_from_a_stdin_pipe() -> None:
    result = run_tool(stdin="import sys\nprint(sys.implementation.name, __name__)\nsys.exit(7)\n")
    assert (result.returncode, result.stdout) == (7, "micropython __main__\n")
    assert run_tool("-", stdin="print(2 ** 70)\n").stdout == f"{2**70}\n"


def test_lib_layout_keeps_packages_and_skips_non_python(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "pkg" / "sub").mkdir(parents=True)
    (plain / "pkg" / "__init__.py").write_text("")
    (plain / "pkg" / "sub" / "__init__.py").write_text("")
    (plain / "pkg" / "sub" / "leaf.py").write_text("VALUE = 41 + 1\n")
    (plain / "pkg" / "notes.txt").write_text("not copied")
    (plain / "top.py").write_text("NAME = 'top'\n")
    code = (
        "import os\nfrom pkg.sub import leaf\nimport top\nimport carbontrace_protocol.cbor\n"
        "print(leaf.VALUE, top.NAME, sorted(os.listdir('/lib/pkg')),"
        " 'errors.py' in os.listdir('/lib/carbontrace_protocol'))\n"
    )
    result = run_micropython(code, [plain, PROTOCOL_DIR])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42 top ['__init__.py', 'sub'] True\n"


def test_mem_report_counts_what_the_script_allocates() -> None:
    small = run_micropython("x = 1", mem_report=True, heap=64 * 1024)
    big = run_micropython("x = bytearray(300000)", mem_report=True, heap=64 * 1024)
    assert small.returncode == big.returncode == 0
    small_report, big_report = mem_report(small.stderr), mem_report(big.stderr)
    assert small_report["heap_initial"] == 64 * 1024
    assert small_report["alloc_bytes"] < 4096
    assert 300000 <= big_report["alloc_bytes"] < 320000
    # the buffer was the run's garbage: collected once the run is over
    assert big_report["heap_used_after"] < 64 * 1024


def test_bad_options_are_usage_errors() -> None:
    assert run_tool("--heap", "lots", "-c", "pass").returncode == 2
    assert run_tool("--lib", "/nonexistent-dir", "-c", "pass").returncode == 2
    assert run_tool("--frobnicate").returncode == 2
