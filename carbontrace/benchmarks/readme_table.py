"""The README's figures table, rendered from one ``carbontrace bench`` report (its JSON), never typed in.

``carbontrace bench --markdown FILE`` writes it at the end of the run; ``python -m
carbontrace.benchmarks.readme_table bench-results.json`` renders a saved report again. Every row of the run
is a line, in the run's order, with its reference and ratio; the heading names the run's date, machine and
duration, so a table always says which single run it came from.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

from carbontrace.benchmarks.common import format_value

HEADER = "| section | figure | ours | reference (same run) | ratio |\n|---|---|---|---|---|"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(report: dict[str, Any]) -> str:
    """The heading line and the table of every row in ``report`` (the JSON ``carbontrace bench`` writes)."""
    machine = report.get("machine", {})
    started = datetime.datetime.fromtimestamp(float(report["started"]), datetime.UTC)
    sections = ", ".join(report["sections"])
    heading = (f"One `carbontrace bench` run ({sections}), {started:%Y-%m-%d %H:%M} UTC, "
               f"{report.get('seconds', 0) / 60:.0f} min, {machine.get('cpus', '?')} CPUs, "
               f"Python {machine.get('python', '?')}"
               + (" (`--quick`: small sizes, not figures)" if report.get("quick") else ""))
    lines = [heading, "", HEADER]
    for section, result in report["sections"].items():
        for row in result["rows"]:
            reference = ""
            if row.get("reference") is not None:
                reference = format_value(row["reference"], row["unit"])
                if row.get("reference_name"):
                    reference += f" ({row['reference_name']})"
            ratio = f"{row['ratio']:.3g}x" if isinstance(row.get("ratio"), int | float) else ""
            figure = row["figure"] + (f"; {row['note']}" if row.get("note") else "")
            lines.append("| " + " | ".join(_cell(c) for c in (section, figure, format_value(row["value"], row["unit"]),
                                                                reference, ratio)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m carbontrace.benchmarks.readme_table BENCH-RESULTS.json\n")
        return 2
    sys.stdout.write(markdown_table(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
