"""`python -m edge_gateway run --config FILE` (the same commands as `carbontrace gateway`)."""

from edge_gateway.cli import gateway_app

gateway_app(prog_name="edge_gateway")
