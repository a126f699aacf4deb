"""`carbontrace gateway …`: run the gateway, create its key, show its spool."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from edge_gateway.config import load_settings
from edge_gateway.keys import create_key_file
from edge_gateway.logs import setup_logging

gateway_app = typer.Typer(help="The CarbonTrace edge gateway.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file (env CT_GATEWAY_*)")]


@gateway_app.command()
def run(config: ConfigOption = None) -> None:
    """Ingest, verify, spool, batch and upload until SIGTERM/SIGINT (then finish the current write, exit 0)."""
    from edge_gateway.service import Gateway

    settings = load_settings(config)
    setup_logging(settings.log_level)
    gateway = Gateway(settings)

    def stop(signum: int, frame: FrameType | None) -> None:
        gateway.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    raise typer.Exit(gateway.run())


@gateway_app.command()
def keygen(
    key_file: Annotated[Path, typer.Argument(help="where to write the private key (mode 0600)")],
    force: Annotated[bool, typer.Option(help="replace an existing key")] = False,
) -> None:
    """Create the gateway's P-256 key; prints the public key (SEC1 hex) to register with the cloud."""
    try:
        public = create_key_file(key_file, overwrite=force)
    except FileExistsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    typer.echo(public.hex())


@gateway_app.command()
def status(config: ConfigOption = None) -> None:
    """Print the spool's state as JSON: backlog, unacknowledged batches, missing readings, alarms."""
    from edge_gateway.spool import Spool

    settings = load_settings(config)
    spool = Spool(settings.spool_path)
    try:
        report = spool.stats()
        report["rejections"] = {f"{d}/{r}": n for (d, r), n in sorted(spool.rejection_counts().items())}
        report["devices"] = {d: {"accepted": a, "duplicates": n} for d, (a, n) in spool.device_counts().items()}
        report["gaps"] = {d: spool.gaps(d) for d in spool.device_counts()}
    finally:
        spool.close()
    typer.echo(json.dumps(report, indent=2, sort_keys=True))
