"""`carbontrace bench` / `make bench`: every figure measured beside its reference in the same run.

Sections (``--only`` picks some): verify, seal, ingest, e2e, capacity, gas, proofs, trace, firmware, statement. Prints a
table, writes JSON (``--json-out``) and, with ``--plot DIR``, PNG charts. What each figure means: docs/benchmarks.md.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from carbontrace.benchmarks.capacity_sizes import CapacitySizes
from carbontrace.benchmarks.common import Row, SectionResult, format_value
from carbontrace.servers import stop_children_on_sigterm

SECTIONS = ("verify", "seal", "ingest", "e2e", "capacity", "gas", "proofs", "trace", "firmware", "statement")


class Sizes:
    """Run sizes: defaults finish in under 5 minutes on 2 cores, ``--quick`` in under 60 s."""

    def __init__(self, quick: bool) -> None:
        self.verify_count = 500 if quick else 5000
        self.seal_count = 50 if quick else 500
        self.ingest_devices = 10
        self.ingest_per_device = 100 if quick else 1000
        self.e2e_devices = 5
        self.e2e_seconds = 8.0 if quick else 30.0
        self.e2e_rate = 50.0 if quick else 100.0
        # quick: only proves the search runs (two short steps per configuration), not a capacity figure
        self.capacity = (CapacitySizes(start_rate=50.0, step_s=3.0, max_steps=2, confirm_s=0.0, verify_count=500)
                         if quick else CapacitySizes())
        self.gas_points = [1_000, 10_000, 100_000]
        self.gas_naive_samples = 5 if quick else 20
        self.proof_sizes = [10**3, 10**4, 10**5, 10**6]
        self.readings_per_batch = 100
        self.proof_repeats = 5 if quick else 20
        self.trace_readings = 2_000 if quick else 10_000
        self.firmware_count = 5 if quick else 30
        # the emulated Pico takes minutes (seconds of host time per emulated signature): not in --quick
        self.firmware_emulated = not quick
        # a month of 100 devices at 15-minute windows (288,000 aggregates) in paged statements; not under 5 min
        self.statement_devices = 5 if quick else 100
        self.statement_days = 1 if quick else 30


def render_table(rows: list[Row]) -> str:
    header = ("section", "figure", "ours", "reference", "ratio", "reference is / note")
    lines = [header]
    for row in rows:
        ratio = row.ratio
        lines.append((row.section, row.figure, format_value(row.value, row.unit), format_value(row.reference, row.unit)
                      if row.reference is not None else "", f"{ratio:.3g}x" if ratio is not None else "",
                      "; ".join(x for x in (row.reference_name, row.note) if x)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(widths[i]) if i < len(widths) else cell for i, cell in enumerate(line)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 20)
    return "\n".join(out)


def run_sections(only: list[str], sizes: Sizes, postgres: bool,
                 echo: Callable[[str], None]) -> dict[str, SectionResult]:
    results: dict[str, SectionResult] = {}
    for name in SECTIONS:
        if name not in only:
            continue
        echo(f"[bench] {name} …")
        start = time.perf_counter()
        try:
            results[name] = _run_one(name, sizes, postgres)
        except Exception as err:  # one broken section must not hide the others' figures
            results[name] = SectionResult(rows=[Row(name, name, None, "", note=f"failed: {type(err).__name__}: {err}")],
                                          details={"error": repr(err)})
        results[name].details["section_seconds"] = round(time.perf_counter() - start, 2)
        echo(f"[bench] {name} done in {results[name].details['section_seconds']} s")
    return results


def _run_one(name: str, sizes: Sizes, postgres: bool) -> SectionResult:
    if name == "verify":
        from carbontrace.benchmarks import verify_bench

        return verify_bench.run(sizes.verify_count)
    if name == "seal":
        from carbontrace.benchmarks import seal_bench

        return seal_bench.run(sizes.readings_per_batch, sizes.seal_count)
    if name == "gas":
        from carbontrace.benchmarks import gas_bench

        return gas_bench.run(sizes.gas_points, sizes.readings_per_batch, sizes.gas_naive_samples)
    if name == "proofs":
        from carbontrace.benchmarks import proofs_bench

        return proofs_bench.run(sizes.proof_sizes, sizes.readings_per_batch, sizes.proof_repeats)
    if name == "firmware":
        from carbontrace.benchmarks import firmware_bench

        return firmware_bench.run(sizes.firmware_count, emulated=sizes.firmware_emulated)
    if name == "ingest":
        from carbontrace.benchmarks import ingest_bench

        return ingest_bench.run(sizes.ingest_devices, sizes.ingest_per_device)
    if name == "e2e":
        from carbontrace.benchmarks import e2e_bench

        return e2e_bench.run(sizes.e2e_devices, sizes.e2e_seconds, sizes.e2e_rate, postgres)
    if name == "capacity":
        from carbontrace.benchmarks import capacity_bench

        return capacity_bench.run(sizes.capacity)
    if name == "trace":
        from carbontrace.benchmarks import trace_bench

        return trace_bench.run(sizes.trace_readings)
    if name == "statement":
        from carbontrace.benchmarks import statement_bench

        return statement_bench.run(sizes.statement_devices, sizes.statement_days)
    raise ValueError(name)


def bench_command(
    only: Annotated[str, typer.Option(help=f"comma-separated sections of {','.join(SECTIONS)}")] = ",".join(SECTIONS),
    quick: Annotated[bool, typer.Option("--quick", help="small sizes: under 60 s")] = False,
    json_out: Annotated[Path, typer.Option("--json-out", help="where to write the JSON results")] = Path(
        "bench-results.json"),
    plot: Annotated[Path | None, typer.Option("--plot", help="write PNG charts into this directory")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="write the README's figures table of this run "
                                                  "(carbontrace/benchmarks/readme_table.py) here")] = None,
    postgres: Annotated[bool, typer.Option("--postgres", help="end to end on PostgreSQL (started here)")] = False,
    verify_count: Annotated[int | None, typer.Option(help="signatures per verify run")] = None,
    ingest_per_device: Annotated[int | None, typer.Option(help="readings per device (10 devices) for ingest")] = None,
    e2e_seconds: Annotated[float | None, typer.Option(help="seconds of load for end to end")] = None,
    e2e_rate: Annotated[float | None, typer.Option(help="offered readings/s for end to end")] = None,
    proof_max_exp: Annotated[int | None, typer.Option(help="largest log is 10^this readings (from 10^3)")] = None,
    readings_per_batch: Annotated[int | None, typer.Option(help="readings per gateway batch (proofs, gas)")] = None,
    trace_readings: Annotated[int | None, typer.Option(help="readings stored for the trace latency")] = None,
    firmware_count: Annotated[int | None, typer.Option(help="signatures per firmware run")] = None,
    statement_devices: Annotated[int | None, typer.Option(help="devices for the paged statement")] = None,
    statement_days: Annotated[int | None, typer.Option(help="days (daily pages) for the paged statement")] = None,
) -> None:
    """Measure CarbonTrace next to its references (same run, same machine); print a table, write JSON."""
    chosen = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise typer.BadParameter(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    sizes = Sizes(quick)
    for attr, value in (("verify_count", verify_count), ("ingest_per_device", ingest_per_device),
                        ("e2e_seconds", e2e_seconds), ("e2e_rate", e2e_rate),
                        ("readings_per_batch", readings_per_batch), ("trace_readings", trace_readings),
                        ("firmware_count", firmware_count), ("statement_devices", statement_devices),
                        ("statement_days", statement_days)):
        if value is not None:
            setattr(sizes, attr, value)
    if proof_max_exp is not None:
        sizes.proof_sizes = [10**e for e in range(3, proof_max_exp + 1)]
    stop_children_on_sigterm()
    started = time.time()
    results = run_sections(chosen, sizes, postgres, lambda text: typer.echo(text, err=True))
    rows = [row for result in results.values() for row in result.rows]
    typer.echo(render_table(rows))
    report: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "cpus": _cpus()},
        "quick": quick,
        "started": started,
        "seconds": round(time.time() - started, 1),
        "sections": {name: {"rows": [r.as_json() for r in result.rows], "details": result.details}
                     for name, result in results.items()},
    }
    json_out.write_text(json.dumps(report, indent=2, default=str))
    typer.echo(f"results written to {json_out}")
    if markdown is not None:
        from carbontrace.benchmarks.readme_table import markdown_table

        markdown.write_text(markdown_table(json.loads(json.dumps(report, default=str))))
        typer.echo(f"figures table written to {markdown}")
    if plot is not None:
        from carbontrace.benchmarks import plots

        written = plots.write_all(results, plot)
        typer.echo(f"charts: {', '.join(str(p) for p in written) or 'none (no plottable section ran)'}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main() -> None:
    typer.run(bench_command)


if __name__ == "__main__":
    main()
