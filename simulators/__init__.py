"""CarbonTrace simulators."""
