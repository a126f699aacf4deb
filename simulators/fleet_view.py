"""The fleet's live summary: a rich progress bar on a terminal, plain periodic lines otherwise; and the
gateway's rejection counters read from its Prometheus endpoint."""

from __future__ import annotations

import collections
import sys
import urllib.request
from types import TracebackType
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from simulators.fleet import FleetSnapshot, Rejections

REJECTED_METRIC = "ct_gateway_readings_rejected"
DUPLICATE_METRIC = "ct_gateway_readings_duplicate"


def parse_rejections(exposition: str) -> dict[str, int]:
    """Rejections by reason (summed over devices) from a gateway's metrics text; duplicates as "duplicate"."""
    counts: collections.Counter[str] = collections.Counter()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == REJECTED_METRIC + "_total":
                counts[sample.labels.get("reason", "?")] += int(sample.value)
            elif sample.name == DUPLICATE_METRIC + "_total":
                counts["duplicate"] += int(sample.value)
    return dict(counts)


def metrics_rejections(url: str, timeout_s: float = 2.0) -> Rejections:
    """A ``Rejections`` callback that scrapes the gateway's metrics URL (e.g. http://127.0.0.1:9108/metrics)."""

    def fetch() -> dict[str, int]:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_rejections(response.read().decode("utf-8", "replace"))

    return fetch


def summary_line(snap: FleetSnapshot) -> str:
    parts = [
        f"t={snap.elapsed_s:6.1f}s",
        f"made {snap.made}",
        f"sent {snap.sent}",
        f"acked {snap.acked}",
        f"outbox {snap.outbox}",
        f"dropped {snap.dropped}",
    ]
    faults = [
        (name, value)
        for name, value in (
            ("reboots", snap.reboots),
            ("tampered", snap.tampered),
            ("replayed", snap.replayed),
            ("forged", snap.forged_sent),
            ("skewed", snap.skewed),
        )
        if value
    ]
    if faults:
        parts.append("| injected " + " ".join(f"{name} {value}" for name, value in faults))
    if snap.rejected is not None:
        counted = " ".join(f"{reason}={n}" for reason, n in sorted(snap.rejected.items())) or "none"
        parts.append(f"| gateway rejected {counted}")
    if snap.errors:
        parts.append(f"| ERRORS {len(snap.errors)}")
    return " ".join(parts)


class LineView:
    """One summary line per update (logs, pipes, CI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __enter__(self) -> LineView:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def update(self, snap: FleetSnapshot) -> None:
        self.stream.write(summary_line(snap) + "\n")
        self.stream.flush()


class ProgressView:
    """A rich progress bar: readings made out of the planned count, or seconds out of the duration."""

    def __init__(self, total: float, by_count: bool, console: Console | None = None) -> None:
        self.by_count = by_count
        self.progress = Progress(
            TextColumn("[bold]fleet"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console or Console(stderr=True),
        )
        self.task = self.progress.add_task("", total=total)

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def update(self, snap: FleetSnapshot) -> None:
        done = snap.made if self.by_count else snap.elapsed_s
        total = self.progress.tasks[0].total or done
        self.progress.update(self.task, completed=min(done, total), description=summary_line(snap).split(" ", 1)[1])
