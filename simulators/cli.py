"""``carbontrace sim``: the device fleet simulator on the command line (``sim_app``, a typer sub-app)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from simulators.fleet import Fleet, FleetConfig, FleetSnapshot
from simulators.fleet_faults import FaultPlan, TimedFault, parse_timed
from simulators.fleet_view import LineView, ProgressView, metrics_rejections

sim_app = typer.Typer(help="Simulators: a fleet of virtual devices running the firmware over real MQTT.",
                      no_args_is_help=True)


@sim_app.callback()
def _group() -> None:
    """Simulators: a fleet of virtual devices running the firmware over real MQTT."""


def _broker(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter("expected HOST:PORT")
    return host, int(port)


def _timed(value: str | None, option: str) -> TimedFault | None:
    if value is None:
        return None
    try:
        return parse_timed(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


@sim_app.command()
def fleet(
    devices: Annotated[int, typer.Option(min=1, help="Number of genuine devices.")] = 3,
    rate: Annotated[float, typer.Option(help="Readings per second per device.")] = 1.0,
    site: Annotated[str, typer.Option(help="Site id (MQTT topic level).")] = "site-1",
    broker: Annotated[str, typer.Option(help="MQTT broker HOST:PORT.")] = "127.0.0.1:1883",
    broker_ca: Annotated[Path | None, typer.Option(help="The broker's CA (PEM): TLS, that CA pinned.")] = None,
    credentials: Annotated[Path | None, typer.Option(
        help="JSON {device: {username, password}} of broker credentials (carbontrace/broker_config.py).")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of measuring (a cap when --count is given).")] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Readings per device, then stop.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Directory for the devices' flash (keys persist).")] = None,
    keys_out: Annotated[Path | None, typer.Option(help="Write {device id: SEC1 public key hex} JSON here.")] = None,
    keys_only: Annotated[bool, typer.Option(help="Create the devices, write --keys-out, exit.")] = False,
    prefix: Annotated[str, typer.Option(help="Device id prefix.")] = "sim",
    metrics_url: Annotated[str | None, typer.Option(help="Gateway metrics URL, for rejected-by-reason.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the final summary as JSON here.")] = None,
    sensor_time_scale: Annotated[float | None, typer.Option(help="Emulated sensor speed-up (default: auto).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress",
                                                  help="Progress bar (default: when stderr is a TTY).")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between summary updates.")] = 1.0,
    broker_outage: Annotated[str | None, typer.Option(
        help="SECONDS@AT: every device's link is cut for SECONDS, AT seconds after the start.")] = None,
    reboot_every: Annotated[int, typer.Option(min=0, help="Reboot each device after N readings (0: never).")] = 0,
    clock_jump: Annotated[str | None, typer.Option(
        help="SECONDS[@AT]: one device's wall clock jumps by SECONDS (AT seconds after the start).")] = None,
    tamper_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction of readings altered.")] = 0.0,
    replay_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction of readings followed by a "
                                               "replay (same bytes, or an old seq re-signed).")] = 0.0,
    forged_devices: Annotated[int, typer.Option(min=0, help="Extra devices: unregistered ids, and "
                                                "registered ids with a wrong key.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of every fault decision, sensor signal and key.")] = 0,
) -> None:
    """Run N virtual devices (firmware DeviceApp + emulated sensors) publishing signed readings."""
    if duration is None and count is None and not keys_only:
        raise typer.BadParameter("give --duration or --count")
    host, port = _broker(broker)
    plan = FaultPlan(
        seed=seed,
        broker_outage=_timed(broker_outage, "--broker-outage"),
        reboot_every=reboot_every,
        clock_jump=_timed(clock_jump, "--clock-jump"),
        tamper_rate=tamper_rate,
        replay_rate=replay_rate,
        forged_devices=forged_devices,
    )
    cfg = FleetConfig(
        devices=devices, rate_hz=rate, site_id=site, broker_host=host, broker_port=port, broker_ca=broker_ca,
        credentials_file=credentials,
        duration_s=duration, count=count if count is not None or not keys_only else 1, workdir=workdir,
        device_prefix=prefix, sensor_time_scale=sensor_time_scale, faults=plan,
    )
    sim = Fleet(cfg)
    try:
        keys = sim.public_keys()
        if keys_out is not None:
            keys_out.write_text(json.dumps(keys, indent=2, sort_keys=True) + "\n")
        if keys_only:
            if keys_out is None:
                typer.echo(json.dumps(keys, indent=2, sort_keys=True))
            return
        jumped = sim.clock_jump_device()
        if jumped is not None:
            typer.echo(f"clock jump applies to {jumped}", err=True)
        use_bar = sys.stderr.isatty() if progress is None else progress
        total = float(count * devices) if count is not None else float(duration or 1.0)
        view: LineView | ProgressView = ProgressView(total, count is not None) if use_bar else LineView()
        rejections = metrics_rejections(metrics_url) if metrics_url else None
        with view:
            final = sim.run(on_progress=view.update, progress_interval_s=interval, rejections=rejections)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        sim.close()
    _finish(final, report)


def _finish(final: FleetSnapshot, report: Path | None) -> None:
    text = json.dumps(final.as_dict(), indent=2, sort_keys=True)
    if report is not None:
        report.write_text(text + "\n")
    typer.echo(text)
    if final.errors:
        raise typer.Exit(1)
