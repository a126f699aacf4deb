"""CarbonTrace command line and demo (the tiers live in their own packages)."""
