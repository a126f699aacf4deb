"""The capacity search's decisions (carbontrace/benchmarks/capacity_bench.py) on a pipeline whose behaviour is
known: a short step is a burst the pipeline absorbs above the rate it keeps up with, so the capacity is what a
long hold sustains, never the burst rate. The real pipeline is measured by `make bench`; this pins the rule."""

from __future__ import annotations

from carbontrace.benchmarks.capacity_bench import LAG_LIMIT_S, search, sustained
from carbontrace.benchmarks.pipeline import LoadResult


class KnownPipeline:
    """Keeps up with ``keeps_up`` readings/s; a step of at most ``burst_s`` seconds is absorbed up to
    ``burst`` readings/s. ``publisher_limit``: the rate its publishers can really send."""

    cloud_count = 1

    def __init__(self, keeps_up: float, burst: float, burst_s: float = 6.0,
                 publisher_limit: float = 1e9) -> None:
        self.keeps_up, self.burst, self.burst_s, self.publisher_limit = keeps_up, burst, burst_s, publisher_limit
        self.offered: list[tuple[float, float]] = []

    def offer(self, rate: float, seconds: float, grace_s: float = 120.0) -> LoadResult:
        self.offered.append((rate, seconds))
        limit = self.burst if seconds <= self.burst_s else self.keeps_up
        sent = int(rate * seconds)
        lag = 2.0 if rate <= limit else LAG_LIMIT_S + 3.0
        published = min(rate, self.publisher_limit)
        return LoadResult(rate, seconds, sent, sent, [lag] * sent, min(rate, limit), published)

    def settle(self, timeout_s: float) -> int:
        return 0


def test_the_capacity_is_what_a_hold_sustains_not_the_burst() -> None:
    pipeline = KnownPipeline(keeps_up=2_700, burst=5_000)
    found = search(pipeline, 100, 6.0, 10, 0.15, 20.0)  # type: ignore[arg-type]
    assert 4_000 <= found.burst <= 5_000
    assert found.holds and all(seconds == 20.0 for _, seconds in pipeline.offered[len(found.steps):])
    assert 0.85 * 2_700 <= found.capacity <= 2_700  # within the resolution, never above what it keeps up with
    assert all(h.offered_rate <= found.burst for h in found.holds)


def test_a_burst_rate_that_also_holds_is_bracketed_from_below_and_never_exceeded() -> None:
    pipeline = KnownPipeline(keeps_up=5_000, burst=5_000)
    found = search(pipeline, 100, 6.0, 10, 0.15, 20.0)  # type: ignore[arg-type]
    assert 0.85 * found.burst <= found.capacity <= found.burst


def test_without_holds_the_burst_rate_is_reported() -> None:  # --quick: proves the machinery only
    found = search(KnownPipeline(keeps_up=300, burst=1_000), 100, 3.0, 2, 0.15, 0.0)  # type: ignore[arg-type]
    assert found.capacity == found.burst == 200 and not found.holds


def test_a_step_the_publishers_could_not_offer_is_not_sustained() -> None:
    load = KnownPipeline(keeps_up=10_000, burst=10_000, publisher_limit=4_000).offer(6_000, 20.0)
    assert load.lost == 0 and load.lag(0.95) <= LAG_LIMIT_S and not sustained(load)
