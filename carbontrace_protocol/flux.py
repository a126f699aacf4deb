"""The chamber flux: a CO2 flux measured in a closed chamber, signed as its own data type. MicroPython-safe.

A closed-chamber session (soil respiration collar, plant-canopy chamber, or a whole greenhouse closed off)
gives a series of CO2 concentration samples; the flux through the covered surface is the slope of that
series times the moles of air in the chamber per unit area (ideal gas, n = PV/RT):

    F [µmol m⁻² s⁻¹] = dC/dt [µmol mol⁻¹ s⁻¹] × P V / (R T A)

Positive: the surface emits CO2 into the chamber (respiration). Negative: the surface takes it up (net
photosynthesis, a removal). A flux is never a concentration: its record has its own type tag, its own COSE
content type, and neither parser accepts the other's bytes. Byte-by-byte definition: docs/protocol.md,
section 7; the accounting rules (sign, QA, summation over time): docs/accounting.md, "Carbon sinks".

Everything is integer arithmetic (ordinary least squares in exact integers, one rounding half to even per
published figure, an integer square root for the standard error), so an ESP32 and CPython produce the same
record and the same bytes.
"""

import hashlib

from carbontrace_protocol import cbor, cose
from carbontrace_protocol.errors import KeyIdMismatch, NonCanonical, ProtocolError
from carbontrace_protocol.reading import MAX_SEQ, MAX_TIMESTAMP, valid_device_id

# typing does not exist on MicroPython: mypy treats this name as true, so the import below is for the type
# checker only, and the annotations naming it are strings (never evaluated on the device).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class MalformedFlux(ProtocolError):
    reason = "malformed_flux"


class NotAFlux(ProtocolError):
    """Bytes of another data type (a concentration reading) where a flux record was expected."""

    reason = "not_a_flux"


class InconsistentFlux(MalformedFlux):
    """A figure of the record that does not follow from its other fields (the flux from the slope, the QA flag
    from n and R²)."""

    reason = "inconsistent_flux"


RECORD_TYPE = "chamber_flux"  # the "type" field: what this record is, in the signed bytes
FORMAT_VERSION = 1
# COSE content type (label 3) of a signed flux: CoAP content-format 60, application/cbor (the reading's is 112,
# application/senml+cbor), so a flux is told from a reading before its payload is decoded.
CONTENT_FORMAT_CBOR = 60

# Fixed decimal exponents of the published figures (CBOR tag 4, [exponent, mantissa])
SLOPE_EXPONENT = -6  # ppm/s (µmol mol⁻¹ s⁻¹), so the mantissa is in pmol mol⁻¹ s⁻¹
FLUX_EXPONENT = -3  # µmol CO2 m⁻² s⁻¹, so the mantissa is in nmol m⁻² s⁻¹
R2_EXPONENT = -4

# The molar gas constant, R = N_A k = 8.314 462 618 153 24 J mol⁻¹ K⁻¹ exactly (SI 2019; CODATA 2018),
# taken to 10 significant digits as the integer R × 1e9. Its relative truncation (2e-11) is far below any
# rounding of the published figures.
GAS_CONSTANT_E9 = 8314462618
KELVIN_OFFSET_MC = 273150  # 0 °C in milli-kelvin

# QA thresholds (docs/accounting.md, "Carbon sinks: QA" says where each comes from)
MIN_SAMPLES = 3  # fewer and the slope has no standard error (n - 2 degrees of freedom): no record at all
QA_MIN_SAMPLES = 5  # below: too_few_samples
QA_MIN_R2_E4 = 9000  # R² below 0.90: low_r2
QA_NONLINEAR_RATIO = 2  # one half's slope more than twice the other's (or of opposite sign): nonlinear
QA_OK = "ok"
QA_TOO_FEW_SAMPLES = "too_few_samples"
QA_LOW_R2 = "low_r2"
QA_NONLINEAR = "nonlinear"
QA_FLAGS = (QA_OK, QA_TOO_FEW_SAMPLES, QA_LOW_R2, QA_NONLINEAR)

# Ranges: a soil collar of a few hundred cm² up to a closed greenhouse of 10,000 m³ over 10,000 m²
MAX_SAMPLES = 10000
MAX_VOLUME_ML = 10**10
MAX_AREA_CM2 = 10**8
MIN_TEMP_MC = -40000
MAX_TEMP_MC = 70000
MIN_PRESSURE_PA = 50000
MAX_PRESSURE_PA = 110000
MAX_CO2_PPM = 40000  # the reading's CO2 range
MAX_SESSION_S = 86400  # one chamber closure; a longer one is not a closed-chamber measurement
MAX_SLOPE_E6 = MAX_CO2_PPM * 10**6  # 40,000 ppm/s: beyond any sensor
MAX_MANTISSA = (1 << 63) - 1

FIELDS = (
    "type",
    "v",
    "device",
    "fw",
    "session",
    "seq",
    "n",
    "samples",
    "volume_ml",
    "area_cm2",
    "temp_mc",
    "pressure_pa",
    "slope",
    "slope_se",
    "r2",
    "flux",
    "flux_se",
    "qa",
)


def round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half to even, in integers (denominator > 0)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def isqrt(value: int) -> int:
    """floor(sqrt(value)) for an integer value >= 0 (Newton's method; math.isqrt is not on MicroPython)."""
    if value < 0:
        raise ValueError("square root of a negative number")
    if value < 2:
        return value
    bits = 0  # value's bit length (int.bit_length is not on MicroPython)
    rest = value
    while rest >= 1 << 32:
        rest >>= 32
        bits += 32
    while rest:
        rest >>= 1
        bits += 1
    x = 1 << ((bits + 1) // 2)  # >= sqrt(value)
    while True:
        y = (x + value // x) // 2
        if y >= x:
            return x
        x = y


def rounded_sqrt_of_ratio(numerator: int, denominator: int) -> int:
    """sqrt(numerator / denominator) rounded to the nearest integer (an exact .5 rounds up).

    The nearest integer k is the largest with (2k - 1)² <= 4 × ratio, i.e. 2k - 1 <= floor(2 sqrt(ratio)).
    """
    return (isqrt(4 * numerator // denominator) + 1) // 2


def samples_digest(samples: "list[tuple[int, int]]") -> bytes:
    """SHA-256 of the canonical CBOR of the samples [[t, co2_ppm], ...]: what the fit was computed from."""
    return hashlib.sha256(cbor.encode([[t, c] for t, c in samples])).digest()


class _Sums:
    """n-scaled centred sums of (t, c): sxx = n Σt² - (Σt)², sxy = n Σtc - Σt Σc, syy = n Σc² - (Σc)²."""

    def __init__(self, samples: "list[tuple[int, int]]") -> None:
        n = len(samples)
        st = sc = stt = stc = scc = 0
        for t, c in samples:
            st += t
            sc += c
            stt += t * t
            stc += t * c
            scc += c * c
        self.n = n
        self.sxx = n * stt - st * st
        self.sxy = n * stc - st * sc
        self.syy = n * scc - sc * sc


def _half_slopes_disagree(samples: "list[tuple[int, int]]") -> bool:
    """True when the first and second halves of the series do not share one straight line: their slopes
    have opposite signs or one is more than QA_NONLINEAR_RATIO times the other (a chamber whose gradient
    saturates, or a leak). Halves of fewer than 3 samples, or a flat half, say nothing."""
    half = len(samples) // 2
    if half < 3 or len(samples) - half < 3:
        return False
    first = _Sums(samples[:half])
    second = _Sums(samples[half:])
    if first.sxx == 0 or second.sxx == 0:
        return False
    # slope_i = sxy_i / sxx_i with sxx_i > 0: compare a = sxy1 sxx2 and b = sxy2 sxx1 (same positive factor)
    a = first.sxy * second.sxx
    b = second.sxy * first.sxx
    if a == 0 or b == 0:
        return a != b
    if (a < 0) != (b < 0):
        return True
    a, b = abs(a), abs(b)
    return a > QA_NONLINEAR_RATIO * b or b > QA_NONLINEAR_RATIO * a


def qa_flag(n: int, r2_e4: int, nonlinear: bool) -> str:
    """The QA flag: too_few_samples, then low_r2, then nonlinear, else ok (the first that applies)."""
    if n < QA_MIN_SAMPLES:
        return QA_TOO_FEW_SAMPLES
    if r2_e4 < QA_MIN_R2_E4:
        return QA_LOW_R2
    if nonlinear:
        return QA_NONLINEAR
    return QA_OK


def flux_from_slope(slope_e6: int, volume_ml: int, area_cm2: int, temp_mc: int, pressure_pa: int) -> int:
    """The flux mantissa (nmol m⁻² s⁻¹ = 1e-3 µmol m⁻² s⁻¹) of a slope mantissa (1e-6 ppm/s), rounded half
    to even. In SI units F = s P V / (R T A) with s = slope_e6 1e-6, V = volume_ml 1e-6 m³, A = area_cm2
    1e-4 m², T = (temp_mc + 273150) 1e-3 K and R = GAS_CONSTANT_E9 1e-9; collecting the powers of ten,
    F × 1e3 = slope_e6 P volume_ml 1e7 / (GAS_CONSTANT_E9 (temp_mc + 273150) area_cm2)."""
    numerator = slope_e6 * pressure_pa * volume_ml * 10**7
    denominator = GAS_CONSTANT_E9 * (temp_mc + KELVIN_OFFSET_MC) * area_cm2
    return round_div(numerator, denominator)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedFlux("%s must be an integer, got %s" % (name, type(value).__name__))
    if not low <= value <= high:
        raise MalformedFlux("%s=%d outside [%d, %d]" % (name, value, low, high))
    return value


def _check_pair(name: str, value: object, low: int, high: int) -> "list[int]":
    if not isinstance(value, list) or len(value) != 2:
        raise MalformedFlux("%s must be a list of two integers" % name)
    first = _check_int(name, value[0], low, high)
    last = _check_int(name, value[1], low, high)
    if first > last:
        raise MalformedFlux("%s [%d, %d] runs backwards" % (name, first, last))
    return [first, last]


class Flux:
    """One chamber session's flux. Scaled integers: flux_e3 = -1234 is -1.234 µmol CO2 m⁻² s⁻¹ (an uptake)."""

    def __init__(
        self,
        device_id: str,
        firmware: str,
        session: "list[int]",
        seq: "list[int]",
        n: int,
        samples: bytes,
        volume_ml: int,
        area_cm2: int,
        temp_mc: int,
        pressure_pa: int,
        slope_e6: int,
        slope_se_e6: int,
        r2_e4: int,
        flux_e3: int,
        flux_se_e3: int,
        qa: str,
    ) -> None:
        if not valid_device_id(device_id):
            raise MalformedFlux("device id must be 1-64 characters of [A-Za-z0-9-._]")
        if not isinstance(firmware, str) or not 0 < len(firmware) <= 32:
            raise MalformedFlux("firmware version must be a 1-32 character string")
        self.device_id = device_id
        self.firmware = firmware
        self.session = _check_pair("session", session, 0, MAX_TIMESTAMP)
        if self.session[0] == self.session[1] or self.session[1] - self.session[0] > MAX_SESSION_S:
            raise MalformedFlux("session must last 1 to %d seconds" % MAX_SESSION_S)
        self.seq = _check_pair("seq", seq, 0, MAX_SEQ)
        self.n = _check_int("n", n, MIN_SAMPLES, MAX_SAMPLES)
        if self.n > self.seq[1] - self.seq[0] + 1:
            raise MalformedFlux("n=%d samples cannot come from %d readings" % (n, self.seq[1] - self.seq[0] + 1))
        if not isinstance(samples, bytes) or len(samples) != 32:
            raise MalformedFlux("samples must be the 32-byte SHA-256 of the samples")
        self.samples = samples
        self.volume_ml = _check_int("volume_ml", volume_ml, 1, MAX_VOLUME_ML)
        self.area_cm2 = _check_int("area_cm2", area_cm2, 1, MAX_AREA_CM2)
        self.temp_mc = _check_int("temp_mc", temp_mc, MIN_TEMP_MC, MAX_TEMP_MC)
        self.pressure_pa = _check_int("pressure_pa", pressure_pa, MIN_PRESSURE_PA, MAX_PRESSURE_PA)
        self.slope_e6 = _check_int("slope", slope_e6, -MAX_SLOPE_E6, MAX_SLOPE_E6)
        self.slope_se_e6 = _check_int("slope_se", slope_se_e6, 0, MAX_SLOPE_E6)
        self.r2_e4 = _check_int("r2", r2_e4, 0, 10000)
        self.flux_e3 = _check_int("flux", flux_e3, -MAX_MANTISSA, MAX_MANTISSA)
        self.flux_se_e3 = _check_int("flux_se", flux_se_e3, 0, MAX_MANTISSA)
        if qa not in QA_FLAGS:
            raise MalformedFlux("qa must be one of %s, got %r" % (", ".join(QA_FLAGS), qa))
        self.qa = qa

    def check_consistent(self) -> None:
        """Raise ``InconsistentFlux`` unless every figure that follows from the record's own fields does:
        the flux and its standard error from the slope and the chamber (exactly), and the QA flag from n and
        R² (``nonlinear`` needs the samples, so an ok/nonlinear choice is taken as signed)."""
        args = (self.volume_ml, self.area_cm2, self.temp_mc, self.pressure_pa)
        expected = flux_from_slope(self.slope_e6, *args)
        if self.flux_e3 != expected:
            raise InconsistentFlux("flux %d is not %d, the slope's through the chamber" % (self.flux_e3, expected))
        expected = flux_from_slope(self.slope_se_e6, *args)
        if self.flux_se_e3 != expected:
            raise InconsistentFlux("flux_se %d is not %d, the slope_se's" % (self.flux_se_e3, expected))
        for nonlinear in (False, True):
            if qa_flag(self.n, self.r2_e4, nonlinear) == self.qa:
                return
        raise InconsistentFlux("qa %r does not follow from n=%d and r2=%d" % (self.qa, self.n, self.r2_e4))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flux) and self.as_map() == other.as_map()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __repr__(self) -> str:
        return "Flux(%r)" % (self.as_map(),)

    def as_map(self) -> "dict[str, Any]":
        """The record's CBOR map (text keys; decimal fractions as CBOR tag 4)."""

        def decimal(exponent: int, mantissa: int) -> cbor.Tag:
            return cbor.Tag(cbor.TAG_DECIMAL_FRACTION, [exponent, mantissa])

        return {
            "type": RECORD_TYPE,
            "v": FORMAT_VERSION,
            "device": self.device_id,
            "fw": self.firmware,
            "session": list(self.session),
            "seq": list(self.seq),
            "n": self.n,
            "samples": self.samples,
            "volume_ml": self.volume_ml,
            "area_cm2": self.area_cm2,
            "temp_mc": self.temp_mc,
            "pressure_pa": self.pressure_pa,
            "slope": decimal(SLOPE_EXPONENT, self.slope_e6),
            "slope_se": decimal(SLOPE_EXPONENT, self.slope_se_e6),
            "r2": decimal(R2_EXPONENT, self.r2_e4),
            "flux": decimal(FLUX_EXPONENT, self.flux_e3),
            "flux_se": decimal(FLUX_EXPONENT, self.flux_se_e3),
            "qa": self.qa,
        }

    def encode(self) -> bytes:
        """The payload bytes (deterministic CBOR)."""
        return cbor.encode(self.as_map())


def compute_flux(
    device_id: str,
    firmware: str,
    session: "list[int]",
    seq: "list[int]",
    samples: "list[tuple[int, int]]",
    volume_ml: int,
    area_cm2: int,
    temp_mc: int,
    pressure_pa: int,
) -> Flux:
    """The flux of one chamber session from its samples [(t, co2_ppm), ...], t in seconds from the session
    start (0 <= t <= session length), in time order. Raises ``MalformedFlux`` for fewer than MIN_SAMPLES,
    samples out of order or out of the session, or a series with no spread in time.

    Ordinary least squares in exact integers: slope = sxy / sxx; R² = sxy² / (sxx syy) (0 for a flat series,
    whose fit explains nothing); standard error of the slope sqrt((syy sxx - sxy²) / ((n - 2) sxx²)).
    """
    if not isinstance(samples, list) or not MIN_SAMPLES <= len(samples) <= MAX_SAMPLES:
        raise MalformedFlux("a flux needs %d to %d samples" % (MIN_SAMPLES, MAX_SAMPLES))
    length = _check_pair("session", session, 0, MAX_TIMESTAMP)
    previous = -1
    for t, c in samples:
        _check_int("sample time", t, 0, length[1] - length[0])
        _check_int("sample co2", c, 0, MAX_CO2_PPM)
        if t <= previous:
            raise MalformedFlux("sample times must increase")
        previous = t
    sums = _Sums(samples)
    if sums.sxx == 0:
        raise MalformedFlux("samples have no spread in time")
    n = sums.n
    slope_e6 = round_div(sums.sxy * 10**6, sums.sxx)
    r2_e4 = 0 if sums.syy == 0 else round_div(10000 * sums.sxy * sums.sxy, sums.sxx * sums.syy)
    residual = sums.syy * sums.sxx - sums.sxy * sums.sxy  # >= 0 (Cauchy-Schwarz), 0 on a perfect line
    slope_se_e6 = rounded_sqrt_of_ratio(10**12 * residual, (n - 2) * sums.sxx * sums.sxx)
    chamber = (volume_ml, area_cm2, temp_mc, pressure_pa)
    for name, value, low, high in (
        ("volume_ml", volume_ml, 1, MAX_VOLUME_ML),
        ("area_cm2", area_cm2, 1, MAX_AREA_CM2),
        ("temp_mc", temp_mc, MIN_TEMP_MC, MAX_TEMP_MC),
        ("pressure_pa", pressure_pa, MIN_PRESSURE_PA, MAX_PRESSURE_PA),
    ):
        _check_int(name, value, low, high)
    return Flux(
        device_id,
        firmware,
        session,
        seq,
        n,
        samples_digest(samples),
        volume_ml,
        area_cm2,
        temp_mc,
        pressure_pa,
        slope_e6,
        slope_se_e6,
        r2_e4,
        flux_from_slope(slope_e6, *chamber),
        flux_from_slope(slope_se_e6, *chamber),
        qa_flag(n, r2_e4, _half_slopes_disagree(samples)),
    )


def _decimal_field(body: "dict[Any, Any]", name: str, exponent: int) -> int:
    value = body[name]
    if not isinstance(value, cbor.Tag) or value.tag != cbor.TAG_DECIMAL_FRACTION:
        raise MalformedFlux("%s must be a decimal fraction (CBOR tag 4)" % name)
    parts = value.value
    if not isinstance(parts, list) or len(parts) != 2 or parts[0] != exponent:
        raise MalformedFlux("%s must be a decimal fraction with exponent %d" % (name, exponent))
    if isinstance(parts[1], bool) or not isinstance(parts[1], int):
        raise MalformedFlux("%s mantissa must be an integer" % name)
    return parts[1]


def flux_from_map(body: object) -> Flux:
    """The ``Flux`` a decoded payload holds; every field is required, no other is allowed."""
    if isinstance(body, list):
        raise NotAFlux("a SenML pack (a concentration reading) is not a flux record")
    if not isinstance(body, dict):
        raise MalformedFlux("a flux record is a CBOR map")
    if body.get("type") != RECORD_TYPE:
        raise NotAFlux("record type %r is not %r" % (body.get("type"), RECORD_TYPE))
    for name in FIELDS:
        if name not in body:
            raise MalformedFlux("flux record has no %r" % name)
    for name in body:
        if name not in FIELDS:
            raise MalformedFlux("unknown flux field %r" % (name,))
    version = body["v"]
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise MalformedFlux("unsupported flux format %r" % (version,))
    return Flux(
        body["device"],
        body["fw"],
        body["session"],
        body["seq"],
        body["n"],
        body["samples"],
        body["volume_ml"],
        body["area_cm2"],
        body["temp_mc"],
        body["pressure_pa"],
        _decimal_field(body, "slope", SLOPE_EXPONENT),
        _decimal_field(body, "slope_se", SLOPE_EXPONENT),
        _decimal_field(body, "r2", R2_EXPONENT),
        _decimal_field(body, "flux", FLUX_EXPONENT),
        _decimal_field(body, "flux_se", FLUX_EXPONENT),
        body["qa"],
    )


def decode_flux_payload(payload: "bytes | bytearray | memoryview") -> Flux:
    """The ``Flux`` of payload bytes, which must be its canonical encoding and consistent
    (``Flux.check_consistent``). Raises ``MalformedCBOR``, ``NotAFlux``, ``MalformedFlux``, ``NonCanonical``,
    ``InconsistentFlux``."""
    body = cbor.decode(payload)
    record = flux_from_map(body)
    if record.encode() != bytes(payload):
        raise NonCanonical("payload is not the canonical encoding of its flux record")
    record.check_consistent()
    return record


def parse_signed_flux(data: "bytes | bytearray | memoryview") -> "tuple[cose.Sign1, Flux]":
    """The COSE_Sign1 and the ``Flux`` of signed flux bytes; checks no signature (servers: verify.verify_flux).

    Raises the COSE errors, ``NotAFlux`` for another content type (a signed reading), the payload's errors,
    and ``KeyIdMismatch`` when the key id is not the record's device id."""
    message = cose.parse_sign1(data)
    content_type = message.headers.get(cose.HEADER_CONTENT_TYPE)
    if content_type != CONTENT_FORMAT_CBOR:
        raise NotAFlux("COSE content type %r is not a flux record's (%d)" % (content_type, CONTENT_FORMAT_CBOR))
    record = decode_flux_payload(message.payload)
    if message.kid != record.device_id.encode():
        raise KeyIdMismatch("key id %r is not the flux record's device id %r" % (message.kid, record.device_id))
    return message, record


def sign_flux(record: Flux, private_key: int) -> bytes:
    """The signed flux: COSE_Sign1 (content type 60) over the record's CBOR, key id = device id, with the
    device key that signs its readings."""
    record.check_consistent()
    return cose.sign1(private_key, record.device_id.encode(), record.encode(), CONTENT_FORMAT_CBOR)
