"""`carbontrace provision device|gateway`: set up a board or a Raspberry Pi gateway and register it;
with ``--rotate``, give an already provisioned one a new key under the same id.

The steps come from carbontrace.provision_plan (pure) and run through carbontrace.provision_runner, so
``--dry-run`` walks exactly the plan a real run would, without a board, the cloud or root.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from carbontrace.cloud_registration import RegistrationError
from carbontrace.provision_plan import (
    BOARD_PINS,
    REPO_ROOT,
    DeviceRequest,
    DeviceRotationRequest,
    GatewayRequest,
    GatewayRotationRequest,
    Step,
    device_plan,
    device_rotation_plan,
    device_settings,
    gateway_plan,
    gateway_rotation_plan,
    parse_broker,
)
from carbontrace.provision_runner import PlanRunner, ProvisionError

provision_app = typer.Typer(help="Provision devices and gateways: keys, settings, cloud registration.",
                            no_args_is_help=True)

CloudOption = Annotated[str, typer.Option("--cloud", help="cloud base URL, e.g. https://cloud.example.org")]
ApiKeyOption = Annotated[
    str, typer.Option("--api-key", envvar="CT_API_KEY", help="enterprise or site-engineer API key (env CT_API_KEY)")
]
SiteOption = Annotated[
    str | None, typer.Option("--site", help="site id the device/gateway belongs to (not needed with --rotate)")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="walk the plan without board, cloud or system changes; files go to --out")
]
RotateOption = Annotated[
    bool,
    typer.Option(
        "--rotate",
        help="give the already registered device/gateway a new key under the same id: new key made in place, "
        "old key revoked and new key registered on chain, then the new key put in use",
    ),
]


def _required_site(site: str | None) -> str:
    if site is None:
        raise typer.BadParameter("--site is required (except with --rotate)")
    return site


def firmware_config() -> ModuleType:
    """The firmware's own settings validator (firmware/carbontrace_device/config.py), from the repository."""
    firmware = str(REPO_ROOT / "firmware")
    if firmware not in sys.path:
        sys.path.append(firmware)
    return importlib.import_module("carbontrace_device.config")


def _run(steps: list[Step], out_dir: Path, runner: PlanRunner) -> None:
    try:
        runner.run(steps, out_dir)
    except (ProvisionError, RegistrationError, FileExistsError, OSError) as err:
        typer.echo(f"provisioning failed: {err}", err=True)
        raise typer.Exit(1) from err


@provision_app.command("device")
def provision_device(
    port: Annotated[str, typer.Option("--port", help="serial port of the board, e.g. /dev/ttyUSB0")],
    cloud: CloudOption,
    api_key: ApiKeyOption,
    device_id: Annotated[str, typer.Option("--device-id", help="device id (1-64 of A-Z a-z 0-9 . _ -)")],
    site: SiteOption = None,
    board: Annotated[str, typer.Option("--board", help="esp32 (DevKitC) or picow: selects the pin set")] = "esp32",
    wifi_ssid: Annotated[str | None, typer.Option("--wifi-ssid")] = None,
    wifi_password: Annotated[
        str | None, typer.Option("--wifi-password", envvar="CT_WIFI_PASSWORD", help="(env CT_WIFI_PASSWORD)")
    ] = None,
    broker: Annotated[str | None, typer.Option("--broker", help="the gateway's MQTT broker, host:port")] = None,
    broker_config: Annotated[Path | None, typer.Option(
        "--broker-config", help="the broker configuration (`carbontrace broker init`): issue this device's MQTT "
        "credentials there and put them and the broker's CA on the board")] = None,
    meter: Annotated[str, typer.Option("--meter", help="pzem, s0 or none")] = "pzem",
    co2_sensor: Annotated[str, typer.Option("--co2-sensor", help="scd4x or none")] = "scd4x",
    dry_run: DryRunOption = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="work directory (build, settings, record); default ~/.carbontrace/provision/<id>"),
    ] = None,
    rotate: RotateOption = False,
) -> None:
    """Build and copy the firmware, write its settings, make the key ON the board, register its public key.

    With --rotate (needs only --port, --cloud, --api-key, --device-id): make a new key ON the board, rotate it
    in the cloud (the old key is revoked on chain), then make it the board's key and restart the board. If a
    step fails, run the same command again: it finishes that rotation (same new key) instead of starting over."""
    out_dir = (out or Path.home() / ".carbontrace" / "provision" / device_id).resolve()
    if rotate:
        runner = PlanRunner(dry_run=dry_run, api_key=api_key, echo=typer.echo)
        _run(device_rotation_plan(DeviceRotationRequest(port, cloud, device_id, out_dir)), out_dir, runner)
        return
    site = _required_site(site)
    if board not in BOARD_PINS:
        raise typer.BadParameter(f"--board must be one of {', '.join(BOARD_PINS)}")
    if broker is not None:
        try:
            parse_broker(broker)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
    request = DeviceRequest(
        port=port,
        cloud_url=cloud,
        site_id=site,
        device_id=device_id,
        out_dir=out_dir,
        board=board,  # type: ignore[arg-type]  # checked against BOARD_PINS above
        wifi_ssid=wifi_ssid,
        wifi_password=wifi_password,
        broker=broker,
        broker_config=broker_config.resolve() if broker_config is not None else None,
        meter=meter,
        co2_sensor=co2_sensor,
    )
    # Fail here, not on the board at boot: the firmware's own validator checks the settings.
    try:
        validator = firmware_config()
    except ImportError as err:
        typer.echo(f"the firmware sources are needed (run from a CarbonTrace checkout): {err}", err=True)
        raise typer.Exit(1) from err
    try:
        validator.load(None, overrides=device_settings(request))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    runner = PlanRunner(dry_run=dry_run, api_key=api_key, echo=typer.echo)
    _run(device_plan(request), request.out_dir, runner)


@provision_app.command("gateway")
def provision_gateway(
    cloud: CloudOption,
    api_key: ApiKeyOption,
    gateway_id: Annotated[str, typer.Option("--gateway-id", help="gateway id (1-64 of A-Z a-z 0-9 . _ -)")],
    out: Annotated[Path, typer.Option("--out", help="staging directory: key, gateway.toml, unit, record")],
    site: SiteOption = None,
    dry_run: DryRunOption = False,
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="install into /etc and start the service (needs root)")
    ] = True,
    mqtt: Annotated[str, typer.Option("--mqtt", help="the local MQTT broker, host:port")] = "127.0.0.1:1883",
    broker_config: Annotated[Path | None, typer.Option(
        "--broker-config", help="the broker configuration (`carbontrace broker init`): issue the gateway's MQTT "
        "credentials there; gateway.toml gets them and the broker's CA")] = None,
    rotate: RotateOption = False,
) -> None:
    """Make the gateway key, register it, write gateway.toml with the returned API key, install the unit.

    With --rotate (on the gateway itself; --site and --mqtt are not used): stage a new key, stop the service,
    rotate the key in the cloud (the old key is revoked on chain), install the new key over the old one and
    start the service. gateway.toml and its API key stay. A failed rotation is finished by running it again."""
    if rotate:
        runner = PlanRunner(dry_run=dry_run, api_key=api_key, echo=typer.echo, perform_system=install)
        _run(gateway_rotation_plan(GatewayRotationRequest(cloud, gateway_id, out.resolve())), out.resolve(), runner)
        if not dry_run and not install:
            typer.echo("not installed (--no-install): the cloud already refuses the old key; run the commands "
                       "listed above as root now")
        return
    site = _required_site(site)
    try:
        mqtt_host, mqtt_port = parse_broker(mqtt)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    request = GatewayRequest(
        cloud_url=cloud,
        site_id=site,
        gateway_id=gateway_id,
        out_dir=out.resolve(),
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        broker_config=broker_config.resolve() if broker_config is not None else None,
    )
    runner = PlanRunner(dry_run=dry_run, api_key=api_key, echo=typer.echo, perform_system=install)
    _run(gateway_plan(request), request.out_dir, runner)
    if not dry_run and not install:
        typer.echo("not installed (--no-install): run the commands listed above as root")
