"""`carbontrace broker init|issue-device|issue-gateway|revoke`: the production broker configuration.

``init`` creates the directory carbontrace/broker_config.py describes (CA, server certificate, password and ACL
files, mosquitto.conf); ``issue-*`` add a client and write its credentials (0600) for the device's config.json
or the gateway's TOML; ``revoke`` removes one. Then (re)start Mosquitto with ``mosquitto -c DIR/mosquitto.conf``
(a restart, not SIGHUP: see carbontrace.servers.Mosquitto.reload).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from carbontrace.broker_config import BrokerConfig, gateway_username
from carbontrace_host.secret_files import write_secret
from carbontrace_protocol import topics

broker_app = typer.Typer(help="The production MQTT broker: TLS, per-client credentials, ACLs.", no_args_is_help=True)

DirOption = Annotated[Path, typer.Option("--dir", help="the broker's configuration directory")]
SiteOption = Annotated[str, typer.Option("--site", help="site id")]
OutOption = Annotated[Path, typer.Option("--out", help="file the credentials are written to (0600)")]
PortOption = Annotated[int, typer.Option("--port", help="TLS listener port")]
BindOption = Annotated[str, typer.Option("--bind", help="address the listener binds")]


def _write_private(path: Path, data: dict[str, object]) -> None:
    write_secret(path, json.dumps(data, indent=2) + "\n")


@broker_app.command("init")
def init_command(
    directory: DirOption,
    host: Annotated[list[str], typer.Option("--host", help="a name or address clients use (repeat)")],
    port: PortOption = 8883,
    bind: BindOption = "0.0.0.0",
    fleet_size: Annotated[int, typer.Option(help="devices on this broker, to size the gateway's queue")] = 100,
    run_as_root: Annotated[bool, typer.Option(help="keep Mosquitto root (tests); else chown DIR to mosquitto")] = False,
    ca_dir: Annotated[Path | None, typer.Option("--ca-dir", help="where the CA's private key goes (default: "
                                                "DIR-ca beside DIR); it never goes to the broker host")] = None,
) -> None:
    """Create (or re-render) the configuration: CA and server certificate for --host, files, mosquitto.conf."""
    config = BrokerConfig(directory, port=port, bind=bind, hosts=host, fleet_size=fleet_size,
                          run_as_root=run_as_root, ca_dir=ca_dir).create()
    typer.echo(f"broker configuration in {directory}: mosquitto -c {config.conf_file}; clients pin {config.ca_file}; "
               f"the CA key is in {config.ca_dir} (keep it off the broker host)")


@broker_app.command("issue-device")
def issue_device(directory: DirOption, site: SiteOption, device: Annotated[str, typer.Option("--device")],
                 out: OutOption) -> None:
    """Credentials for one device: it may publish only on its own reading and status topics, read nothing."""
    config = BrokerConfig.open(directory)
    credentials = config.add_device(site, device)
    _write_private(out, {"broker_user": credentials.username, "broker_password": credentials.password,
                         "broker_ca": "broker-ca.pem"})
    typer.echo(f"{device}: credentials in {out} (merge into its config.json; copy {config.ca_file} to its flash "
               "as broker-ca.pem); restart the broker")


@broker_app.command("issue-gateway")
def issue_gateway(directory: DirOption, site: SiteOption, gateway: Annotated[str, typer.Option("--gateway")],
                  out: OutOption,
                  workers: Annotated[int, typer.Option("--workers", min=1, max=topics.MAX_INGEST_WORKERS,
                                                       help="its ingest_workers (one MQTT user each)")] = 1) -> None:
    """Credentials for a site's gateway: it alone may read the site's device topics."""
    config = BrokerConfig.open(directory)
    credentials = config.add_gateway(site, gateway, workers)
    _write_private(out, {"mqtt_username": credentials.username, "mqtt_password": credentials.password,
                         "mqtt_ca_file": str(config.ca_file), "mqtt_client_id": gateway_username(gateway)})
    if workers > 1:
        typer.echo(f"{gateway}: set ingest_workers = {workers} and mqtt_shared_group in its TOML")
    typer.echo(f"{gateway}: credentials in {out} (the [gateway] settings of its TOML); restart the broker")


@broker_app.command("revoke")
def revoke(directory: DirOption, username: Annotated[str, typer.Argument()], port: PortOption = 8883) -> None:
    """Remove one client's credentials and ACL lines."""
    if not BrokerConfig.open(directory).revoke(username):
        raise typer.BadParameter(f"no broker user {username!r}")
    typer.echo(f"{username} revoked; restart the broker")
