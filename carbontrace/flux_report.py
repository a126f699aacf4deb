"""A period's CO2 removal or emission from chamber fluxes, from a proof bundle verified first.

`carbontrace flux-total BUNDLE --rpc URL --trust trust.json --start S --end E [--area-cm2 A] [--max-gap-s G]`
verifies the bundle exactly as `carbontrace verify` does (carbontrace/verify_bundle.py) and only when it is
valid sums its flux items with the accounting rule (carbontrace_protocol/flux_total.py, docs/accounting.md
"Carbon sinks"), one total per chamber (device). A bundle that is not valid gives no figure: its report and its
exit code, as `verify` would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from carbontrace import verify_bundle
from carbontrace_protocol import strict_json
from carbontrace_protocol.batch import parse_leaf
from carbontrace_protocol.flux import Flux, parse_signed_flux
from carbontrace_protocol.flux_total import DEFAULT_MAX_GAP_S, integrate
from carbontrace_protocol.proof_bundle import ProofBundle
from carbontrace_protocol.proof_verify import EXIT_CHAIN_UNREACHABLE, EXIT_USAGE, ChainUnreachable, Report
from carbontrace_protocol.views import KIND_FLUX


def flux_totals(bundle: ProofBundle, report: Report, start: int, end: int, area_cm2: int | None = None,
                max_gap_s: int = DEFAULT_MAX_GAP_S) -> dict[str, Any]:
    """Per device, the total of the bundle's flux items over [start, end); the bundle's report must be valid."""
    if report.status != "valid":
        raise ValueError(f"the bundle is {report.status}: no figure from it")
    by_device: dict[str, list[Flux]] = {}
    for item in bundle.items:
        if item.kind == KIND_FLUX:
            record = parse_signed_flux(parse_leaf(item.leaf)[1])[1]
            by_device.setdefault(record.device_id, []).append(record)
    return {
        "status": "valid",
        "period": [start, end],
        "chambers": [integrate(records, start, end, area_cm2, max_gap_s) for _, records in sorted(by_device.items())],
    }


def flux_total_command(
    bundle_path: Annotated[Path, typer.Argument(help="proof bundle (JSON) of type flux", metavar="BUNDLE.json")],
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of a node of the pinned chain, or cloud /rpc")],
    start: Annotated[int, typer.Option("--start", help="period start, unix s")],
    end: Annotated[int, typer.Option("--end", help="period end (exclusive), unix s")],
    trust_file: Annotated[Path | None, typer.Option("--trust", help="pinned trust file")] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="pinned registry contract address")] = None,
    chain_id: Annotated[int | None, typer.Option("--chain-id", help="pinned chain id")] = None,
    area_cm2: Annotated[
        int | None, typer.Option("--area-cm2", min=1, help="the surface a chamber stands for (default: its own)")
    ] = None,
    max_gap_s: Annotated[
        int, typer.Option("--max-gap-s", min=1, help="a session stands for at most half this either side")
    ] = DEFAULT_MAX_GAP_S,
) -> None:
    """Verify a flux proof bundle, then sum its chambers' fluxes into tCO2 removed (negative) or emitted."""
    try:
        trust = verify_bundle.load_trust(trust_file, registry, chain_id)
        document = strict_json.loads(bundle_path.read_bytes())
        if end <= start:
            raise ValueError("--end must be after --start")
    except (OSError, ValueError, strict_json.StrictJSONError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    try:
        chain = verify_bundle.Web3ChainReader.over_http(rpc, trust.registry)
        report = verify_bundle.verify_document(document, chain, trust)
    except ChainUnreachable as err:
        typer.echo(f"error: chain at {rpc} unreachable: {err}", err=True)
        raise typer.Exit(EXIT_CHAIN_UNREACHABLE) from err
    if report.status != "valid":
        typer.echo(json.dumps(report.as_json(), indent=2))
        raise typer.Exit(report.exit_code)
    typer.echo(json.dumps(flux_totals(ProofBundle.from_json(document), report, start, end, area_cm2, max_gap_s),
                          indent=2))


flux_total_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
flux_total_app.command(name="flux-total")(flux_total_command)


if __name__ == "__main__":  # pragma: no cover - `python -m carbontrace.flux_report`
    flux_total_app()
