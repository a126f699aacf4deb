"""The CarbonTrace reading: a SenML pack (RFC 8428, CBOR form) signed as COSE_Sign1. MicroPython-safe.

Byte-by-byte definition and a worked example: docs/protocol.md. Values are integers or decimal
fractions (CBOR tag 4) with a fixed exponent per field, never binary floats, so a reading encodes to
the same bytes on an ESP32 (single-precision floats) and in CPython.
"""

from carbontrace_protocol import cbor, cose
from carbontrace_protocol.errors import MalformedCBOR, MalformedReading, MissingField, NonCanonical

# typing does not exist on MicroPython: mypy treats this name as true, so the import below is for the type
# checker only, and the annotations naming it are strings (never evaluated on the device).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

FORMAT_VERSION = 1  # wall time only: the format of every reading before boot counters
FORMAT_BOOT_CLOCK = 2  # adds the boot counter and seconds since boot; no wall time while unsynced
FORMATS = (FORMAT_VERSION, FORMAT_BOOT_CLOCK)

# SenML labels (RFC 8428 §6, Table 4)
SENML_BASE_NAME = -2
SENML_BASE_TIME = -3
SENML_NAME = 0
SENML_UNIT = 1
SENML_VALUE = 2
SENML_STRING_VALUE = 3

# Status flags (a bit field in the "flags" record)
# Format 1: the timestamp is the device's monotonic clock (before any NTP sync). Format 2: there is no
# timestamp at all; the gateway re-times the reading from boot + up (carbontrace_protocol/retime.py).
FLAG_TIME_NOT_SYNCED = 1
FLAG_METER_RESET = 2  # the energy counter went backwards (reset or wrap) since the previous reading
FLAG_CO2_SENSOR_FAULT = 4  # the CO2 sensor failed this cycle; co2/temp/rh are absent
FLAG_METER_FAULT = 8  # the energy meter failed this cycle; energy/power are absent
ALL_FLAGS = 15

MAX_SEQ = (1 << 53) - 1
MAX_TIMESTAMP = (1 << 32) - 1
MAX_BOOT = (1 << 32) - 1  # power-ups counted by the device (persisted in flash)
MAX_UPTIME = MAX_TIMESTAMP  # seconds since boot
MAX_ID_LENGTH = 64
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"

# Optional measurements in their fixed order: (SenML name, unit, attribute, decimal exponent or None
# for a plain integer, minimum, maximum). Ranges are the sensors' physical ranges, widened a little.
MEASUREMENTS: tuple[tuple[str, str, str, int | None, int, int], ...] = (
    ("co2", "ppm", "co2_ppm", None, 0, 40000),
    ("temp", "Cel", "temperature_centi_c", -2, -4000, 12500),
    ("rh", "%RH", "humidity_centi_pct", -2, 0, 10000),
    ("energy", "Wh", "energy_wh", None, 0, MAX_SEQ),
    ("power", "W", "power_deci_w", -1, 0, 1 << 32),
)


def valid_device_id(device_id: object) -> bool:
    if not isinstance(device_id, str) or not 0 < len(device_id) <= MAX_ID_LENGTH:
        return False
    for ch in device_id:
        if ch not in _ID_CHARS:
            return False
    return True


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedReading("%s must be an integer, got %s" % (name, type(value).__name__))
    if not low <= value <= high:
        raise MalformedReading("%s=%d outside [%d, %d]" % (name, value, low, high))
    return value


class Reading:
    """One measurement cycle of one device. Scaled integers: 2345 centi-°C is 23.45 °C."""

    def __init__(
        self,
        device_id: str,
        seq: int,
        timestamp: int | None,
        firmware: str,
        flags: int = 0,
        co2_ppm: int | None = None,
        temperature_centi_c: int | None = None,
        humidity_centi_pct: int | None = None,
        energy_wh: int | None = None,
        power_deci_w: int | None = None,
        boot: int | None = None,
        up: int | None = None,
    ) -> None:
        if not valid_device_id(device_id):
            raise MalformedReading("device id must be 1-64 characters of [A-Za-z0-9-._]")
        if not isinstance(firmware, str) or not 0 < len(firmware) <= 32:
            raise MalformedReading("firmware version must be a 1-32 character string")
        self.device_id = device_id
        self.seq = _check_int("seq", seq, 0, MAX_SEQ)
        self.firmware = firmware
        self.flags = _check_int("flags", flags, 0, ALL_FLAGS)
        if (boot is None) != (up is None):
            raise MalformedReading("boot and up come together or not at all")
        self.boot = None if boot is None else _check_int("boot", boot, 0, MAX_BOOT)
        self.up = None if up is None else _check_int("up", up, 0, MAX_UPTIME)
        self.timestamp: int | None = None
        if boot is None or not self.flags & FLAG_TIME_NOT_SYNCED:
            self.timestamp = _check_int("timestamp", timestamp, 0, MAX_TIMESTAMP)
        elif timestamp is not None:
            # format 2 before the first sync: the time is re-derived from boot + up, never guessed here
            raise MalformedReading("an unsynced reading with a boot clock carries no timestamp")
        self.co2_ppm = co2_ppm
        self.temperature_centi_c = temperature_centi_c
        self.humidity_centi_pct = humidity_centi_pct
        self.energy_wh = energy_wh
        self.power_deci_w = power_deci_w
        for name, _unit, attr, _exp, low, high in MEASUREMENTS:
            value = getattr(self, attr)
            if value is not None:
                _check_int(name, value, low, high)

    @property
    def format(self) -> int:
        """The reading format version its encoding declares: 2 when it carries the boot clock."""
        return FORMAT_VERSION if self.boot is None else FORMAT_BOOT_CLOCK

    @property
    def unsynced(self) -> bool:
        """True for a format-2 reading taken before the first time sync: no wall time, only boot + up."""
        return self.timestamp is None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reading) and self.as_dict() == other.as_dict()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __repr__(self) -> str:
        return "Reading(%r)" % (self.as_dict(),)

    def as_dict(self) -> dict[str, str | int | None]:
        result: dict[str, str | int | None] = {
            "device_id": self.device_id,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "firmware": self.firmware,
            "flags": self.flags,
        }
        for _name, _unit, attr, _exp, _low, _high in MEASUREMENTS:
            result[attr] = getattr(self, attr)
        if self.boot is not None:  # format 1 readings keep their old shape
            result["boot"] = self.boot
            result["up"] = self.up
        return result

    def to_senml(self, make_tag: "Any" = cbor.Tag) -> "list[dict[int, Any]]":
        """The SenML pack (a list of records with integer labels), in the canonical record order.

        ``make_tag(tag, value)`` builds the decimal fractions: ``cbor.Tag`` here, another encoder's tag type
        in ``fast_decode``.
        """
        return list(self._records(make_tag))

    def _record_count(self) -> int:
        count = 4 if self.boot is None else 6
        for _name, _unit, attr, _exp, _low, _high in MEASUREMENTS:
            if getattr(self, attr) is not None:
                count += 1
        return count

    def _records(self, make_tag: "Any") -> "Iterator[dict[int, Any]]":
        """The pack's records one by one (``_record_count()`` of them), so an encoder need not hold them all."""
        # Labels in each record are written in canonical order (encoded 0x00-0x03 before -2 = 0x21 and
        # -3 = 0x22): cbor.encode sorts anyway, and fast_decode's order-keeping C encoder relies on it.
        first: dict[int, Any] = {SENML_NAME: "seq", SENML_VALUE: self.seq, SENML_BASE_NAME: self.device_id + "/"}
        if self.timestamp is not None:
            first[SENML_BASE_TIME] = self.timestamp
        yield first
        yield {SENML_NAME: "fmt", SENML_VALUE: self.format}
        yield {SENML_NAME: "fw", SENML_STRING_VALUE: self.firmware}
        yield {SENML_NAME: "flags", SENML_VALUE: self.flags}
        if self.boot is not None:
            yield {SENML_NAME: "boot", SENML_VALUE: self.boot}
            yield {SENML_NAME: "up", SENML_UNIT: "s", SENML_VALUE: self.up}
        for name, unit, attr, exp, _low, _high in MEASUREMENTS:
            value = getattr(self, attr)
            if value is None:
                continue
            if exp is not None:
                value = make_tag(cbor.TAG_DECIMAL_FRACTION, [exp, value])
            yield {SENML_NAME: name, SENML_UNIT: unit, SENML_VALUE: value}

    def encode(self) -> bytes:
        """The SenML-CBOR payload bytes (deterministic): ``cbor.encode(self.to_senml())``, written record by
        record into one buffer (a device holds one record at a time, not the whole pack)."""
        out = bytearray()
        cbor.write_head(out, cbor.MAJOR_ARRAY, self._record_count())
        for record in self._records(cbor.Tag):
            cbor.encode_into(record, out)
        return bytes(out)


def _record_value(record: "dict[Any, Any]", name: str, exp: int | None) -> "Any":
    value = record.get(SENML_VALUE)
    if exp is None:
        return value
    if not isinstance(value, cbor.Tag) or value.tag != cbor.TAG_DECIMAL_FRACTION:
        raise MalformedReading("%s must be a decimal fraction (CBOR tag 4)" % name)
    parts = value.value
    if not isinstance(parts, list) or len(parts) != 2 or parts[0] != exp:
        raise MalformedReading("%s must be a decimal fraction with exponent %d" % (name, exp))
    return parts[1]


def reading_from_senml(pack: object) -> Reading:
    """Build a ``Reading`` from a decoded SenML pack; raises ``MalformedReading``/``MissingField``."""
    if not isinstance(pack, list) or len(pack) < 4:
        raise MissingField("SenML pack must hold at least the seq, fmt, fw and flags records")
    for record in pack:
        if not isinstance(record, dict):
            raise MalformedReading("every SenML record must be a map")
    first = pack[0]
    base_name = first.get(SENML_BASE_NAME)
    if not isinstance(base_name, str) or not base_name.endswith("/"):
        raise MissingField("first record must carry the base name '<device id>/'")
    if first.get(SENML_NAME) != "seq":
        raise MissingField("first record must be the sequence number")
    by_name: dict[str, Any] = {}
    for record in pack[1:]:
        name = record.get(SENML_NAME)
        if not isinstance(name, str):
            raise MalformedReading("every SenML record needs a name")
        if name in by_name:
            raise MalformedReading("duplicate SenML record %r" % name)
        by_name[name] = record
    for required in ("fmt", "fw", "flags"):
        if required not in by_name:
            raise MissingField("SenML pack has no %r record" % required)
    fmt = by_name["fmt"].get(SENML_VALUE)
    if isinstance(fmt, bool) or fmt not in FORMATS:
        raise MalformedReading("unsupported reading format %r" % (fmt,))
    values: dict[str, Any] = {}
    known = ["fmt", "fw", "flags"]
    if fmt == FORMAT_BOOT_CLOCK:
        # both records are required in format 2 (and unknown in format 1); the base time is absent exactly
        # when the unsynced flag is set (Reading checks that)
        for required in ("boot", "up"):
            if required not in by_name or SENML_VALUE not in by_name[required]:
                raise MissingField("format 2 needs the %r record" % required)
        if by_name["up"].get(SENML_UNIT) != "s":
            raise MalformedReading("up must be in unit 's'")
        values["boot"] = by_name["boot"].get(SENML_VALUE)
        values["up"] = by_name["up"].get(SENML_VALUE)
        known += ["boot", "up"]
    elif SENML_BASE_TIME not in first:
        raise MissingField("first record must carry the base time")
    for name, unit, attr, exp, _low, _high in MEASUREMENTS:
        known.append(name)
        record = by_name.get(name)
        if record is None:
            values[attr] = None
            continue
        if record.get(SENML_UNIT) != unit:
            raise MalformedReading("%s must be in unit %r" % (name, unit))
        values[attr] = _record_value(record, name, exp)
        if values[attr] is None:
            raise MissingField("%s record has no value" % name)
    for name in by_name:
        if name not in known:
            raise MalformedReading("unknown SenML record %r" % name)
    if fmt == FORMAT_BOOT_CLOCK and SENML_BASE_TIME in first and first[SENML_BASE_TIME] is None:
        raise MalformedReading("base time must be an integer")
    return Reading(
        base_name[:-1],
        first.get(SENML_VALUE),
        first.get(SENML_BASE_TIME),
        by_name["fw"].get(SENML_STRING_VALUE),
        flags=by_name["flags"].get(SENML_VALUE),
        **values,
    )


def decode_payload(payload: bytes | bytearray | memoryview) -> Reading:
    """Decode SenML-CBOR payload bytes into a ``Reading``; the bytes must be the canonical encoding."""
    try:
        pack = cbor.decode(payload)
    except MalformedCBOR:
        raise
    reading = reading_from_senml(pack)
    if reading.encode() != bytes(payload):
        raise NonCanonical("payload is not the canonical encoding of its reading")
    return reading


def sign_reading(reading: Reading, private_key: int) -> bytes:
    """The signed reading: COSE_Sign1 over the SenML-CBOR payload, key id = device id."""
    return cose.sign1(private_key, reading.device_id.encode(), reading.encode())
