"""The capacity section's sizes (apart from it so `carbontrace bench` imports no server code to parse flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CapacitySizes:
    processes: tuple[int, ...] = (1, 2)  # cloud ingestion processes, one search each
    gateways: int = 2  # sites, one gateway and one publisher each, split over the cloud processes
    devices: int = 5  # per site
    start_rate: float = 100.0  # readings/s offered at the first step (then doubled until a step fails)
    step_s: float = 6.0  # seconds each offered rate is held
    max_steps: int = 10  # per search: doubling from 100/s takes 6-7 steps, bisection the rest (~10 x (6 s + drain))
    resolution: float = 0.15  # stop bisecting when the bracket is narrower than this fraction of the rate
    confirm_s: float = 20.0  # the search's rate is then held this long (0: not held; capacity_bench docstring)
    verify_count: int = 5000  # signatures for the verify_es256 reference
