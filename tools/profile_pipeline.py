"""CPU per reading of each process of the capacity pipeline under one offered load; optionally py-spy profiles.

    .venv/bin/python tools/profile_pipeline.py RATE SECONDS CLOUD_PROCESSES [--py-spy DIR]

Starts the `capacity` section's pipeline (carbontrace/benchmarks/pipeline.py: PostgreSQL, anvil, 2 gateways of 5
devices), offers RATE readings/s for SECONDS, and prints the CPU seconds (psutil, user + system) each kind of
process used during the load, per reading sent. The bench process's figure includes signing the load, which
the pipeline does before the publishers start. With ``--py-spy DIR`` it also records one gateway and one cloud
process (``py-spy record -f raw``, 100 Hz) into DIR. A measuring tool for docs/benchmarks.md ("Capacity,
measured"), not a test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from carbontrace.benchmarks.pipeline import Pipeline

KINDS = (("gateway", "edge_gateway"), ("cloud", "uvicorn"), ("postgres", "postgres"), ("mosquitto", "mosquitto"),
         ("anvil", "anvil"))


def kind_of(process: psutil.Process) -> str | None:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return None
    return next((kind for kind, pattern in KINDS if pattern in command), None)


def cpu_by_pid() -> dict[int, tuple[str, float]]:
    me = psutil.Process().pid
    out = {}
    for process in psutil.process_iter():
        kind = "bench" if process.pid == me else kind_of(process)
        if kind is None:
            continue
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        out[process.pid] = (kind, times.user + times.system)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rate", type=float)
    parser.add_argument("seconds", type=float)
    parser.add_argument("clouds", type=int)
    parser.add_argument("--py-spy", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Pipeline(Path(tmp), 5, postgres=True, gateways=2,
                                                         cloud_processes=args.clouds, shared_chain=True) as pipe:
        pipe.offer(200, 3, 10)  # warm: connections, caches, the first checkpoint
        spies = []
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            seen: set[str] = set()
            for process in psutil.process_iter():
                kind = kind_of(process)
                if kind in ("gateway", "cloud") and kind not in seen:
                    seen.add(kind)
                    spies.append(subprocess.Popen(
                        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(process.pid), "-o",
                         str(args.py_spy / f"{kind}.raw"), "-f", "raw", "-r", "100", "-d", str(int(args.seconds + 6))],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        before, started = cpu_by_pid(), time.time()
        load = pipe.offer(args.rate, args.seconds, 30)
        after, wall = cpu_by_pid(), time.time() - started
        for spy in spies:
            spy.wait()
    per_kind: dict[str, float] = {}
    for pid, (kind, cpu) in after.items():
        per_kind[kind] = per_kind.get(kind, 0.0) + cpu - before.get(pid, (kind, 0.0))[1]
    print(load.as_json())  # noqa: T201 - a command-line tool's output
    print(f"wall {wall:.1f} s, sent {load.sent}")  # noqa: T201
    for kind, cpu in sorted(per_kind.items(), key=lambda item: -item[1]):
        print(f"{kind:10s} {cpu:7.2f} CPU s  {1e6 * cpu / load.sent:7.0f} µs/reading")  # noqa: T201
    print(f"total {1e6 * sum(per_kind.values()) / load.sent:.0f} µs/reading")  # noqa: T201


if __name__ == "__main__":
    main()
