"""Board entry point (MicroPython, ESP32 / Pico W): copied to the board as /main.py.

Builds the board port, reads /data/config.json over the defaults, creates the buses and sensor drivers
the config names, prints the device's public key (for registration) and runs the application under
the hardware watchdog. Nothing here runs under CPython; ``simulators.device_host`` is the host twin.
"""

import sys
import time

import machine
from carbontrace_device import config
from carbontrace_device.app import DeviceApp
from carbontrace_device.config_defaults import FIRMWARE_VERSION
from carbontrace_device.ports.board import BoardPort


def build_co2_sensor(settings):
    if settings["co2_sensor"] != "scd4x":
        return None
    from carbontrace_device.scd4x import SCD4X

    i2c = machine.I2C(
        settings["i2c_id"], scl=machine.Pin(settings["i2c_scl"]), sda=machine.Pin(settings["i2c_sda"]), freq=100000
    )
    sensor = SCD4X(i2c)
    try:
        sensor.start_measuring(settings["scd4x_self_calibration"])
    except OSError as err:
        # a missing sensor is reported per reading (FLAG_CO2_SENSOR_FAULT), not fatal
        print("SCD4x at 0x%02x did not start: %r" % (sensor.address, err))  # noqa: T201
    return sensor


def build_meter(settings, flash):
    kind = settings["meter"]
    if kind == "pzem":
        from carbontrace_device.pzem004t import PZEM004T

        uart = machine.UART(
            settings["uart_id"],
            baudrate=9600,
            tx=machine.Pin(settings["uart_tx"]),
            rx=machine.Pin(settings["uart_rx"]),
        )
        return PZEM004T(uart)
    if kind == "s0":
        from carbontrace_device.s0_counter import S0Counter, S0TotalStore

        pin = machine.Pin(settings["s0_pin"], machine.Pin.IN, machine.Pin.PULL_UP)
        return S0Counter(
            pin,
            pulses_per_kwh=settings["s0_pulses_per_kwh"],
            debounce_ms=settings["s0_debounce_ms"],
            store=S0TotalStore(flash),
            hard=True,
        )
    return None


def main():
    port = BoardPort()
    settings = config.load(port.flash)
    app = DeviceApp(port, settings, co2_sensor=build_co2_sensor(settings), meter=build_meter(settings, port.flash))
    print("CarbonTrace firmware", FIRMWARE_VERSION, "device", app.device_id)  # noqa: T201
    print("public key (SEC1 hex):", app.key.public_key_hex())  # noqa: T201
    print("config:", config.redacted(settings))  # noqa: T201
    port.start_watchdog(settings["watchdog_ms"])
    app.run_forever()


try:
    main()
except KeyboardInterrupt:
    raise  # Ctrl-C from mpremote: stay in the REPL
except Exception as err:  # noqa: BLE001 - last resort on the board: log, then reboot
    sys.print_exception(err)
    time.sleep(5)
    machine.reset()
