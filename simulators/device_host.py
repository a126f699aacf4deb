"""CPython entry point: run the device application on the host port (tests, demos, the fleet simulator).

    python -m simulators.device_host --flash DIR --broker HOST:PORT --site S --device D \
        [--interval-ms N] [--count N] [--sensors none|emulated] [--events FILE] [--print-pubkey]

``--count N`` stops after N readings were made in this run AND the outbox is empty; 0 runs until killed.
``--events FILE`` appends one line ``stored <seq> <record_id>`` per reading after it is durably in the
outbox (tests kill -9 the process and check that every stored reading is delivered).
``--sensors emulated`` drives the real SCD4x and PZEM drivers over the bus emulators in ``simulators/``
(the repository root must be importable). Host-only: it lives in simulators/, off the board's manifest.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, TextIO

from simulators import firmware_path

firmware_path.ensure()

from carbontrace_device import config  # noqa: E402 - needs the firmware directory on sys.path
from carbontrace_device.app import DeviceApp  # noqa: E402
from carbontrace_device.keystore import DeviceKey  # noqa: E402

from simulators.host_port import HostPort  # noqa: E402


def _parse_broker(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("--broker must be HOST:PORT")
    return host, int(port)


def build_emulated_sensors(
    time_scale: float = 1.0, seed: int = 0, self_calibration: bool = True
) -> tuple[Any, Any, Any, Any]:
    """The real SCD4x and PZEM drivers over the bus emulators (imported only when asked for).

    ``time_scale`` speeds up the emulated sensors (100: the SCD4x's 5 s period becomes 50 ms).
    Returns (co2 sensor, meter, scd4x emulator, pzem emulator).
    """
    from carbontrace_device.pzem004t import PZEM004T
    from carbontrace_device.scd4x import SCD4X

    from simulators.pzem_emulator import PZEMEmulator, UARTAdapter
    from simulators.scd4x_emulator import SCD4xEmulator

    scd_bus = SCD4xEmulator(time_scale=time_scale, seed=seed)
    co2 = SCD4X(scd_bus)
    co2.start_measuring(self_calibration)
    pzem = PZEMEmulator(time_scale=time_scale)
    meter = PZEM004T(UARTAdapter(pzem, baudrate=None, reply_delay_ms=1.0))
    return co2, meter, scd_bus, pzem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulators.device_host", description=__doc__.split("\n")[0])
    parser.add_argument("--flash", required=True, help="directory standing in for the device's flash")
    parser.add_argument("--broker", type=_parse_broker, default=None, help="HOST:PORT of the MQTT broker")
    parser.add_argument("--site", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--interval-ms", type=int, default=None)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--keepalive", type=int, default=None)
    parser.add_argument("--outbox-budget", type=int, default=None, help="outbox flash budget in bytes")
    parser.add_argument("--sensors", choices=("none", "emulated"), default="none")
    parser.add_argument("--sensor-time-scale", type=float, default=1.0, help="speed-up of emulated sensors")
    parser.add_argument("--reconnect-max-ms", type=int, default=None, help="cap of the reconnect backoff")
    parser.add_argument("--events", default=None, help="file to append 'stored <seq> <record>' lines to")
    parser.add_argument("--print-pubkey", action="store_true", help="print the public key (hex) and exit")
    args = parser.parse_args(argv)

    port = HostPort(args.flash)
    if args.print_pubkey:
        print(DeviceKey(port).public_key_hex())  # noqa: T201 - the CLI's output
        return 0
    overrides: dict[str, Any] = {}
    if args.broker is not None:
        overrides["broker_host"], overrides["broker_port"] = args.broker
    if args.site is not None:
        overrides["site_id"] = args.site
    if args.device is not None:
        overrides["device_id"] = args.device
    if args.interval_ms is not None:
        overrides["measure_interval_ms"] = args.interval_ms
    if args.keepalive is not None:
        overrides["keepalive_s"] = args.keepalive
    if args.outbox_budget is not None:
        overrides["outbox_budget_bytes"] = args.outbox_budget
    if args.reconnect_max_ms is not None:
        overrides["reconnect_max_ms"] = args.reconnect_max_ms
    if args.sensors == "none":
        overrides["co2_sensor"] = "none"
        overrides["meter"] = "none"
    settings = config.load(port.flash, overrides)
    co2 = meter = None
    if args.sensors == "emulated":
        co2, meter, _scd, _pzem = build_emulated_sensors(
            args.sensor_time_scale, self_calibration=settings["scd4x_self_calibration"]
        )
    app = DeviceApp(port, settings, co2_sensor=co2, meter=meter, poll_interval_ms=5)

    events: TextIO | None = None
    if args.events:
        events = open(args.events, "a")  # noqa: SIM115 - kept open for the whole run

        def log_stored(seq: int, record_id: int) -> None:
            assert events is not None
            events.write(f"stored {seq} {record_id}\n")
            events.flush()

        app.on_reading = log_stored

    signal.signal(signal.SIGTERM, lambda *_: app.stop())
    try:
        app.run_forever(max_readings=args.count or None)
    except KeyboardInterrupt:
        pass
    finally:
        app.shutdown()
        if events is not None:
            events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
