"""Human/JSON views of protocol objects (no I/O)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from carbontrace_protocol.reading import (
    FLAG_CO2_SENSOR_FAULT,
    FLAG_METER_FAULT,
    FLAG_METER_RESET,
    FLAG_TIME_NOT_SYNCED,
    MEASUREMENTS,
    Reading,
)

_FLAG_NAMES = {
    FLAG_TIME_NOT_SYNCED: "time_not_synced",
    FLAG_METER_RESET: "meter_reset",
    FLAG_CO2_SENSOR_FAULT: "co2_sensor_fault",
    FLAG_METER_FAULT: "meter_fault",
}


def reading_json(reading: Reading) -> dict[str, Any]:
    """A reading with its values in their units as exact decimal strings, e.g. temperature "23.45" Cel."""
    values: dict[str, Any] = {}
    for name, unit, attr, exponent, _low, _high in MEASUREMENTS:
        raw = getattr(reading, attr)
        if raw is None:
            continue
        value = str(Decimal(raw).scaleb(exponent)) if exponent is not None else raw
        values[name] = {"value": value, "unit": unit}
    out: dict[str, Any] = {
        "device_id": reading.device_id,
        "seq": reading.seq,
        "timestamp": reading.timestamp,  # null for a format-2 reading taken before the device's time sync
        "firmware": reading.firmware,
        "flags": [name for bit, name in _FLAG_NAMES.items() if reading.flags & bit],
        "values": values,
    }
    if reading.boot is not None:
        out["format"] = reading.format
        out["boot"], out["up"] = reading.boot, reading.up
    return out
