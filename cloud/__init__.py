"""CarbonTrace cloud."""
