"""PNG charts of a bench run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from carbontrace.benchmarks.common import SectionResult


def write_all(results: dict[str, SectionResult], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    ingest = results.get("ingest")
    if ingest is not None and ingest.details.get("series"):
        series = ingest.details["series"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([p["t"] for p in series], [p["readings_per_s"] for p in series], label="gateway: verified into spool")
        ax.axhline(ingest.details["bare_msgs_per_s"], color="grey", linestyle="--",
                   label="bare Mosquitto pub→sub (same run)")
        ax.set_xlabel("seconds since first publish")
        ax.set_ylabel("readings/s")
        ax.set_title("Gateway ingest rate over time (QoS 1)")
        ax.legend()
        written.append(_save(fig, out / "ingest_rate.png"))

    proofs = results.get("proofs")
    if proofs is not None and proofs.details.get("points"):
        points = proofs.details["points"]
        ns = [p["readings"] for p in points]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(ns, [p["bundle_bytes"] for p in points], marker="o", label="bundle bytes")
        ax.set_xscale("log")
        ax.set_xlabel("readings in the log (N)")
        ax.set_ylabel("bytes")
        twin = ax.twinx()
        twin.plot(ns, [p["verify_ms"] for p in points], marker="s", color="tab:orange", label="offline verify ms")
        twin.set_ylabel("ms")
        twin.set_ylim(bottom=0)
        ax.set_title("Proof size and offline verify time vs N")
        fig.legend(loc="upper left")
        written.append(_save(fig, out / "proofs.png"))

    gas = results.get("gas")
    if gas is not None and gas.details.get("anchors"):
        anchors = gas.details["anchors"]
        xs = [a["readings"] for a in anchors]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(xs, [a["gas"] / a["readings"] for a in anchors], marker="o", label="CarbonTrace: checkpoint anchor")
        ax.axhline(gas.details["naive_gas_per_reading"], color="grey", linestyle="--",
                   label="one tx per reading (NaiveHashStore)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("readings per checkpoint")
        ax.set_ylabel("gas per reading")
        ax.set_title("On-chain cost per reading (embedded EVM)")
        ax.legend()
        written.append(_save(fig, out / "gas_per_reading.png"))
    capacity = results.get("capacity")
    if capacity is not None and capacity.details.get("searches"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for found in capacity.details["searches"]:
            steps = sorted((s for s in found["steps"] if s["lag_p95_s"] is not None), key=lambda s: s["offered_rate"])
            line = ax.plot([s["offered_rate"] for s in steps], [s["lag_p95_s"] for s in steps], marker="o",
                           label=f"{found['processes']} cloud process(es): capacity {found['capacity']:,.0f}/s")
            holds = [s for s in found.get("holds", []) if s["lag_p95_s"] is not None]
            if holds:  # the long holds that decide the capacity (capacity_bench docstring), same colour
                ax.scatter([s["offered_rate"] for s in holds], [s["lag_p95_s"] for s in holds], marker="s", s=60,
                           facecolors="none", edgecolors=line[0].get_color(),
                           label=f"{found['processes']} cloud process(es): {capacity.details['confirm_s']:g} s holds")
        ax.axhline(capacity.details["lag_limit_s"], color="grey", linestyle="--", label="p95 lag limit")
        ax.set_xlabel("offered readings/s")
        ax.set_ylabel("p95 lag, publish -> anchored (s)")
        ax.set_yscale("log")
        ax.set_title("End-to-end lag against offered rate")
        ax.legend()
        written.append(_save(fig, out / "capacity_lag.png"))
    return written


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
