"""The gateway's health report for the cloud: per-device rejection counters and missing sequence ranges.

Pure: built from what the spool holds (cumulative counters, current gaps); the service sends it with
CloudClient.report_health to POST /api/v1/gateways/{gateway_id}/health, which keeps the latest one.
"""

from __future__ import annotations

from typing import Any

MAX_GAPS_PER_DEVICE = 64  # the cloud refuses longer lists; the oldest ranges are the ones kept


def health_report(
    rejections: dict[tuple[str, str], int], gaps: dict[str, list[tuple[int, int]]]
) -> dict[str, Any]:
    """``rejections``: (device label, reason) -> count; ``gaps``: device -> missing [lo, hi] ranges."""
    labels = sorted({label for label, _ in rejections} | {d for d, ranges in gaps.items() if ranges})
    devices = []
    for label in labels:
        counts = {reason: n for (who, reason), n in sorted(rejections.items()) if who == label}
        ranges = [[lo, hi] for lo, hi in sorted(gaps.get(label, []))[:MAX_GAPS_PER_DEVICE]]
        devices.append({"device": label, "rejections": counts, "gaps": ranges})
    return {"devices": devices}
