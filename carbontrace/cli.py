"""The `carbontrace` command line. Each tier adds its sub-commands here."""

from __future__ import annotations

import json
import string
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from carbontrace.audit_period import audit_period_command
from carbontrace.bench import bench_command
from carbontrace.broker_cli import broker_app
from carbontrace.drill import drill_command
from carbontrace.factors_cli import factors_app
from carbontrace.flux_report import flux_total_command
from carbontrace.instruments_cli import instruments_app
from carbontrace.open_blob import open_blob_command
from carbontrace.party import party_app
from carbontrace.provision import provision_app
from carbontrace.readout import reading_json
from carbontrace.verify_bundle import verify_command
from carbontrace_protocol import cose
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.reading import decode_payload
from carbontrace_protocol.verify import verify_reading
from cloud.cli import cloud_app
from edge_gateway.cli import gateway_app
from simulators.cli import sim_app

app = typer.Typer(
    help="CarbonTrace: sensor-to-chain traceable emission data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.add_typer(cloud_app, name="cloud")
app.add_typer(broker_app, name="broker")
app.add_typer(gateway_app, name="gateway")
app.add_typer(provision_app, name="provision")
app.add_typer(party_app, name="party")
app.add_typer(factors_app, name="factors")
app.add_typer(instruments_app, name="instruments")
app.add_typer(sim_app, name="sim")
app.command("verify")(verify_command)
app.command("flux-total")(flux_total_command)
app.command("bench")(bench_command)
app.command("drill")(drill_command)
app.command("open-blob")(open_blob_command)
app.command("audit-period")(audit_period_command)


@app.callback()
def _root() -> None:
    """CarbonTrace: devices sign readings, gateways batch them, the cloud anchors them on a chain."""


def _read_bytes(source: str) -> bytes:
    """Raw bytes from a file or stdin ('-'); hex text (whitespace allowed) is decoded to bytes."""
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    text = data.strip()
    if text and all(chr(b) in string.hexdigits or chr(b).isspace() for b in text):
        try:
            return bytes.fromhex(text.decode())
        except ValueError:
            pass
    return data


def _public_key(value: str) -> bytes:
    path = Path(value)
    if len(value) != 130 and path.exists():
        return _read_bytes(value)
    try:
        return bytes.fromhex(value)
    except ValueError as err:
        raise typer.BadParameter("give the public key as 130 hex characters or a file") from err


@app.command()
def decode(
    source: Annotated[str, typer.Argument(help="signed reading file (binary or hex), or - for stdin")],
    public_key: Annotated[
        str | None, typer.Option("--public-key", "-k", help="device public key (SEC1 hex, or a file) to verify with")
    ] = None,
) -> None:
    """Print a signed reading as JSON, and whether it verifies when given the device's public key.

    Exit status: 0 decoded (and verified, when a key was given); 1 malformed or not verified.
    """
    try:
        data = _read_bytes(source)
    except OSError as err:
        typer.echo(f"error: cannot read {source}: {err}", err=True)
        raise typer.Exit(2) from err
    result: dict[str, Any] = {}
    try:
        message = cose.parse_sign1(data)
        result["cose"] = {"alg": "ES256", "kid": message.kid.decode(errors="replace"), "bytes": len(data)}
        if public_key is None:
            result["reading"] = reading_json(decode_payload(message.payload))
            result["verification"] = {"status": "not_checked", "detail": "no --public-key given"}
        else:
            result["reading"] = reading_json(verify_reading(data, _public_key(public_key)))
            result["verification"] = {"status": "verified", "alg": "ES256"}
    except ProtocolError as err:
        result["verification"] = {"status": "invalid", "reason": err.reason, "detail": str(err)}
        typer.echo(json.dumps(result, indent=2))
        raise typer.Exit(1) from err
    typer.echo(json.dumps(result, indent=2))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
