"""Capacity: the highest offered rate the whole pipeline sustains (p95 lag <= 5 s, nothing lost), beside one
core's ``verify_es256`` rate measured in the same run; with 1 and with 2 cloud ingestion processes.

Search per configuration on one running pipeline (carbontrace/benchmarks/pipeline.py, PostgreSQL, anvil as the
chain both replicas share): double the offered rate from ``start_rate`` until a step fails, then bisect between
the last sustained and the first failed rate. Each step offers its rate for ``step_s`` seconds; a failed step's
backlog is drained before the next, so each step starts from an idle pipeline.

A short step is a burst: the pipeline may fall behind for its ``step_s`` seconds and still anchor everything
within the lag limit (at ``step_s`` = 6 s and ~2 s of fixed latency, up to ~1.5x what it keeps up with). So the
rate the search found only bounds a second search by holds of ``confirm_s`` seconds (``hold_search``). The
capacity is the highest rate that passed a hold (at 20 s a backlog can hide at most ~15 % of the rate). A step or
a hold also fails when the publishers did not really offer its rate.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from carbontrace.benchmarks.capacity_sizes import CapacitySizes
from carbontrace.benchmarks.common import Row, SectionResult
from carbontrace.benchmarks.pipeline import LoadResult, Pipeline
from carbontrace.benchmarks.verify_bench import verify_es256_rate

LAG_LIMIT_S = 5.0
# A reading not anchored this long after its step's last publish counts as lost for the step (it is far past
# the lag limit anyway); the run's truly lost ones (never anchored) are counted after the last drain.
GRACE_S = 10.0
DRAIN_S = 60.0
HOLD_START = 0.7  # the first hold is at this share of the burst rate, and each failed one before a pass lower
MAX_HOLDS = 6
PUBLISHED_SHARE = 0.95  # the publishers must really have sent this share of the offered rate


@dataclass
class Search:
    processes: int
    capacity: float = 0.0  # highest offered rate sustained through a hold (0: not even the first step)
    burst: float = 0.0  # highest rate a short search step sustained (it bounds the holds from above)
    steps: list[LoadResult] = field(default_factory=list)
    holds: list[LoadResult] = field(default_factory=list)
    never_anchored: int = 0


def sustained(load: LoadResult) -> bool:
    kept_up = math.isnan(load.published_rate) or load.published_rate >= PUBLISHED_SHARE * load.offered_rate
    return load.lost == 0 and load.lag(0.95) <= LAG_LIMIT_S and kept_up


def search(pipeline: Pipeline, start_rate: float, step_s: float, max_steps: int, resolution: float,
           confirm_s: float) -> Search:
    """Doubling, then bisection until the bracket is narrower than ``resolution`` (a fraction of the rate); then
    the holds (module docstring). ``confirm_s`` 0: no hold, the burst rate is reported (``--quick``)."""
    found = Search(pipeline.cloud_count)
    good, bad = 0.0, None
    rate = start_rate
    while len(found.steps) < max_steps:
        load = pipeline.offer(rate, step_s, GRACE_S)
        found.steps.append(load)
        if sustained(load):
            good = max(good, rate)
        else:
            bad = rate if bad is None else min(bad, rate)
            pipeline.settle(DRAIN_S)
        if bad is None:
            rate *= 2
        elif bad - good <= resolution * bad:
            break
        else:
            rate = (good + bad) / 2
    found.burst = good
    found.capacity = good if confirm_s <= 0 else hold_search(pipeline, found, confirm_s, resolution)
    found.never_anchored = pipeline.settle(DRAIN_S)
    return found


def hold_search(pipeline: Pipeline, found: Search, confirm_s: float, resolution: float) -> float:
    """The highest rate that passes a hold of ``confirm_s`` seconds, by bisection below the burst rate: first
    ``HOLD_START`` of it, stepping down by that factor until a hold passes, then halving the bracket until it
    is narrower than ``resolution`` or ``MAX_HOLDS`` holds were run (0: nothing held)."""
    good, bad = 0.0, None
    rate = round(found.burst * HOLD_START, 1)
    while rate > 0 and len(found.holds) < MAX_HOLDS:
        pipeline.settle(DRAIN_S)
        hold = pipeline.offer(rate, confirm_s, GRACE_S)
        found.holds.append(hold)
        if sustained(hold):
            good = rate
            if bad is None:
                # held below the burst rate: the next try is between it and the burst rate (which a short
                # step sustained but a hold may not)
                bad = found.burst
        else:
            bad = rate if bad is None else min(bad, rate)
        if good > 0 and bad is not None and bad - good <= resolution * bad:
            break
        rate = round((good + bad) / 2, 1) if good > 0 and bad is not None else round(rate * HOLD_START, 1)
    return good


def run(sizes: CapacitySizes) -> SectionResult:
    verify_rate = verify_es256_rate(sizes.verify_count)
    searches = []
    database = ""
    for processes in sizes.processes:
        with tempfile.TemporaryDirectory(prefix="ct-bench-capacity-") as tmp_name, \
                Pipeline(Path(tmp_name), sizes.devices, postgres=True, gateways=sizes.gateways,
                         cloud_processes=processes, shared_chain=True) as pipeline:
            searches.append(search(pipeline, sizes.start_rate, sizes.step_s, sizes.max_steps, sizes.resolution,
                                   sizes.confirm_s))
            database = pipeline.database
    result = SectionResult()
    for found in searches:
        figure = "e2e capacity" if found.processes == 1 else f"e2e capacity, {found.processes} ingestion processes"
        best = [s for s in [*found.holds, *found.steps] if s.offered_rate == found.capacity]
        note = (f"{database}, anvil, {sizes.gateways} gateways -> {found.processes} cloud process(es); "
                f"p95 lag <= {LAG_LIMIT_S:g} s, 0 lost; {len(found.steps)} steps of {sizes.step_s:g} s")
        if found.holds:
            note += (f", held {sizes.confirm_s:g} s (search steps sustained {found.burst:,.0f}/s as a burst; "
                     f"{len(found.holds)} hold(s))")
        if best:
            note += f"; p95 {best[0].lag(0.95):.2f} s there"
        result.rows.append(Row("capacity", figure, found.capacity, "readings/s", verify_rate,
                               "verify_es256, one core (same run)", note=note))
    result.details = {
        "lag_limit_s": LAG_LIMIT_S, "verify_es256_per_s": verify_rate, "database": database,
        "gateways": sizes.gateways, "devices_per_gateway": sizes.devices, "step_s": sizes.step_s,
        "confirm_s": sizes.confirm_s,
        "searches": [{"processes": f.processes, "capacity": f.capacity, "never_anchored": f.never_anchored,
                      "steps": [s.as_json() for s in f.steps], "burst_capacity": f.burst,
                      "holds": [s.as_json() for s in f.holds]} for f in searches],
    }
    return result
