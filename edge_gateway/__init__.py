"""CarbonTrace edge_gateway."""
