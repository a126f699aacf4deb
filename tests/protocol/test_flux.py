"""Chamber flux records: the integer fit against an independent floating-point one, the sign convention, the QA
flags, strict parsing with typed reasons, signing, and that a flux and a concentration reading never pass for
each other."""

from __future__ import annotations

import hashlib
import math
import random
import statistics
from typing import Any

import cbor2
import pytest
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm, ContentType
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import Sign1Message

from carbontrace_protocol import cbor, cose, errors, flux, p256
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.verify import verify_flux, verify_reading

KEY = p256.private_key_from_bytes(hashlib.sha256(b"test chamber device key").digest())
PUB = p256.public_key(KEY)
SESSION = [1764126000, 1764126180]
# a soil collar: 20 L headspace over 1000 cm², 20 °C, 101325 Pa
CHAMBER = dict(volume_ml=20000, area_cm2=1000, temp_mc=20000, pressure_pa=101325)


def linear_samples(slope_ppm_s: float, noise_ppm: float, seed: int = 1, every_s: int = 5) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(t, round(420 + slope_ppm_s * t + rng.gauss(0, noise_ppm))) for t in range(0, 181, every_s)]


def session_flux(samples: list[tuple[int, int]], **chamber: int) -> flux.Flux:
    return flux.compute_flux("dev-001", "0.5.0", SESSION, [100, 100 + len(samples) - 1], samples,
                             **{**CHAMBER, **chamber})


def float_fit(samples: list[tuple[int, int]]) -> tuple[float, float, float]:
    """(slope ppm/s, R², standard error of the slope) by the textbook formulas in floating point."""
    ts = [float(t) for t, _ in samples]
    cs = [float(c) for _, c in samples]
    slope, intercept = statistics.linear_regression(ts, cs)
    r = statistics.correlation(ts, cs)
    mean_t = statistics.fmean(ts)
    rss = sum((c - (intercept + slope * t)) ** 2 for t, c in samples)
    se = math.sqrt(rss / (len(samples) - 2) / sum((t - mean_t) ** 2 for t in ts))
    return slope, r * r, se


def float_flux(slope_ppm_s: float, volume_ml: int, area_cm2: int, temp_mc: int, pressure_pa: int) -> float:
    """µmol m⁻² s⁻¹ from SI units: F = s P V / (R T A)."""
    r_gas = 8.31446261815324
    return slope_ppm_s * pressure_pa * (volume_ml * 1e-6) / (r_gas * (temp_mc / 1000 + 273.15) * area_cm2 * 1e-4)


@pytest.mark.parametrize("slope,noise,seed", [(0.24, 1.0, 1), (-0.6, 2.0, 2), (0.05, 0.5, 3), (1.7, 4.0, 4)])
def test_integer_fit_matches_a_floating_point_fit(slope: float, noise: float, seed: int) -> None:
    samples = linear_samples(slope, noise, seed)
    record = session_flux(samples)
    f_slope, f_r2, f_se = float_fit(samples)
    assert record.slope_e6 == round(f_slope * 1e6)
    assert record.r2_e4 == round(f_r2 * 1e4)
    assert record.slope_se_e6 == round(f_se * 1e6)
    assert record.flux_e3 == round(float_flux(record.slope_e6 * 1e-6, **CHAMBER) * 1e3)
    assert record.flux_se_e3 == round(float_flux(record.slope_se_e6 * 1e-6, **CHAMBER) * 1e3)
    assert record.n == len(samples)
    assert record.samples == hashlib.sha256(cbor2.dumps([[t, c] for t, c in samples])).digest()


def test_worked_soil_collar() -> None:
    """0.24 ppm/s in 20 L over 0.1 m² at 20 °C and 101325 Pa is about 2 µmol m⁻² s⁻¹ of respiration."""
    record = session_flux([(t, 420 + (24 * t) // 100) for t in range(0, 181, 5)])
    assert record.flux_e3 == flux.flux_from_slope(record.slope_e6, **CHAMBER)
    # exactly: 240000e-6 ppm/s → 240000 × 101325 × 20000 × 1e7 / (8314462618 × 293150 × 1000) = 1995.39…
    assert flux.flux_from_slope(240000, **CHAMBER) == 1995
    assert record.qa == flux.QA_OK


def test_a_falling_concentration_is_a_negative_flux_an_uptake() -> None:
    uptake = session_flux(linear_samples(-0.5, 1.0))
    emission = session_flux(linear_samples(0.5, 1.0))
    assert uptake.flux_e3 < 0 < emission.flux_e3
    assert uptake.qa == emission.qa == flux.QA_OK


def test_the_same_slope_in_a_taller_chamber_is_a_larger_flux() -> None:
    samples = linear_samples(0.3, 0.5)
    low = session_flux(samples)
    tall = session_flux(samples, volume_ml=40000)
    assert tall.flux_e3 == flux.flux_from_slope(low.slope_e6, 40000, 1000, 20000, 101325)
    assert abs(tall.flux_e3 - 2 * low.flux_e3) <= 1


def test_warmer_air_holds_fewer_moles() -> None:
    samples = linear_samples(0.3, 0.5)
    assert session_flux(samples, temp_mc=35000).flux_e3 < session_flux(samples, temp_mc=5000).flux_e3


def test_qa_too_few_samples() -> None:
    record = session_flux([(0, 420), (60, 434), (120, 449), (180, 463)])
    assert record.n == 4 and record.qa == flux.QA_TOO_FEW_SAMPLES


def test_qa_low_r2() -> None:
    record = session_flux(linear_samples(0.02, 8.0))
    assert record.r2_e4 < flux.QA_MIN_R2_E4 and record.qa == flux.QA_LOW_R2


def test_qa_flat_series_has_r2_zero() -> None:
    record = session_flux([(t, 415) for t in range(0, 181, 5)])
    assert (record.slope_e6, record.slope_se_e6, record.r2_e4, record.flux_e3) == (0, 0, 0, 0)
    assert record.qa == flux.QA_LOW_R2


def test_qa_nonlinear_saturating_chamber() -> None:
    """Headspace CO2 that approaches a plateau (Kutzbach et al. 2007's exponential case) fits a line with a
    high R², but its halves have very different slopes."""
    samples = [(t, round(420 + 120 * (1 - math.exp(-t / 40)))) for t in range(0, 181, 5)]
    record = session_flux(samples)
    assert record.r2_e4 >= flux.QA_MIN_R2_E4 - 1500
    assert record.qa in (flux.QA_NONLINEAR, flux.QA_LOW_R2)
    steep = [(t, round(420 + 300 * (1 - math.exp(-t / 90)))) for t in range(0, 181, 5)]
    assert session_flux(steep).r2_e4 >= flux.QA_MIN_R2_E4
    assert session_flux(steep).qa == flux.QA_NONLINEAR


def test_samples_must_be_in_the_session_and_in_order() -> None:
    with pytest.raises(flux.MalformedFlux, match="increase"):
        session_flux([(0, 420), (10, 421), (10, 422), (20, 423)])
    with pytest.raises(flux.MalformedFlux, match="sample time"):
        session_flux([(0, 420), (10, 421), (181, 422)])
    with pytest.raises(flux.MalformedFlux, match="samples"):
        session_flux([(0, 420), (10, 421)])


def test_isqrt_and_rounded_sqrt() -> None:
    for value in [*range(2000), 10**40 + 12345, (1 << 127) - 1]:
        assert flux.isqrt(value) == math.isqrt(value)
    assert flux.rounded_sqrt_of_ratio(225, 100) == 2  # 1.5 → 2 (half up)
    assert flux.rounded_sqrt_of_ratio(224, 100) == 1
    assert flux.rounded_sqrt_of_ratio(10**12 * 2, 1) == round(math.sqrt(2) * 1e6)


# ---- signing, parsing, and the line between a flux and a concentration reading


def signed(record: flux.Flux | None = None) -> bytes:
    return flux.sign_flux(record or session_flux(linear_samples(-0.4, 1.0)), KEY)


def _cbor2_value(value: Any) -> Any:
    if isinstance(value, cbor.Tag):
        return cbor2.CBORTag(value.tag, _cbor2_value(value.value))
    if isinstance(value, dict):
        return {k: _cbor2_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cbor2_value(v) for v in value]
    return value


def resign_map(body: dict[str, Any], content_type: int = flux.CONTENT_FORMAT_CBOR, kid: bytes = b"dev-001") -> bytes:
    """Sign ``body`` as it is (cbor2's canonical encoder: it writes floats, which ours refuses to)."""
    payload = cbor2.dumps(_cbor2_value(body), canonical=True)
    protected = cose.protected_header(kid, content_type)
    signature = p256.sign(KEY, cose.sig_structure(protected, payload))
    return cbor.encode(cbor.Tag(18, [protected, {}, payload, signature]))


def test_sign_and_verify_round_trip() -> None:
    record = session_flux(linear_samples(-0.4, 1.0))
    assert verify_flux(signed(record), PUB) == record


def test_pycose_verifies_our_signed_flux_and_sees_its_content_type() -> None:
    parsed = cose.parse_sign1(signed())
    key = EC2Key(crv=P256, x=PUB[1:33], y=PUB[33:])
    msg = Sign1Message.from_cose_obj([parsed.protected, {}, parsed.payload, parsed.signature],
                                     allow_unknown_attributes=False)
    msg.key = key
    assert msg.verify_signature()
    assert cbor2.loads(parsed.protected)[3] == 60


def test_pycose_made_flux_verifies_with_ours() -> None:
    record = session_flux(linear_samples(0.3, 1.0))
    key = EC2Key(crv=P256, d=KEY.to_bytes(32, "big"), x=PUB[1:33], y=PUB[33:])
    msg = Sign1Message(phdr={Algorithm: Es256, KID: b"dev-001", ContentType: 60}, payload=record.encode())
    msg.key = key
    assert verify_flux(msg.encode(), PUB) == record


def test_a_signed_reading_is_not_a_flux() -> None:
    reading = sign_reading(Reading("dev-001", 7, 1764126000, "0.5.0", co2_ppm=612), KEY)
    with pytest.raises(flux.NotAFlux) as caught:
        verify_flux(reading, PUB)
    assert caught.value.reason == "not_a_flux"
    # even under the flux content type, a SenML pack is not a flux record
    from carbontrace_protocol.reading import decode_payload

    pack = cose.parse_sign1(reading).payload
    assert decode_payload(pack).co2_ppm == 612
    protected = cose.protected_header(b"dev-001", flux.CONTENT_FORMAT_CBOR)
    forged = cbor.encode(cbor.Tag(18, [protected, {}, pack, p256.sign(KEY, cose.sig_structure(protected, pack))]))
    with pytest.raises(flux.NotAFlux):
        verify_flux(forged, PUB)


def test_a_signed_flux_is_not_a_reading() -> None:
    with pytest.raises(errors.MalformedReading):
        verify_reading(signed(), PUB)


def test_flux_under_the_reading_content_type_is_refused() -> None:
    body = session_flux(linear_samples(0.3, 1.0)).as_map()
    with pytest.raises(flux.NotAFlux, match="content type 112"):
        verify_flux(resign_map(body, content_type=112), PUB)


def _body(**changes: Any) -> dict[str, Any]:
    body = session_flux(linear_samples(-0.4, 1.0)).as_map()
    for name, value in changes.items():
        if value is _DROP:
            del body[name]
        else:
            body[name] = value
    return body


_DROP = object()
_T = cbor.Tag


REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("missing flux", {"flux": _DROP}, "malformed_flux"),
    ("missing samples", {"samples": _DROP}, "malformed_flux"),
    ("unknown field", {"co2": 612}, "malformed_flux"),
    ("other type tag", {"type": "co2_reading"}, "not_a_flux"),
    ("version 2", {"v": 2}, "malformed_flux"),
    ("version true", {"v": True}, "malformed_flux"),
    ("float volume", {"volume_ml": 20000.0}, "malformed_flux"),
    ("zero area", {"area_cm2": 0}, "malformed_flux"),
    ("pressure in hPa", {"pressure_pa": 1013}, "malformed_flux"),
    ("flux with another exponent", {"flux": _T(4, [-2, -200])}, "malformed_flux"),
    ("flux as a plain integer", {"flux": -2000}, "malformed_flux"),
    ("r2 above one", {"r2": _T(4, [-4, 10001])}, "malformed_flux"),
    ("negative standard error", {"slope_se": _T(4, [-6, -5])}, "malformed_flux"),
    ("unknown qa", {"qa": "good"}, "malformed_flux"),
    ("session backwards", {"session": [SESSION[1], SESSION[0]]}, "malformed_flux"),
    ("session of a day and more", {"session": [SESSION[0], SESSION[0] + 86401]}, "malformed_flux"),
    ("n beyond the seq range", {"n": 38, "seq": [100, 136]}, "malformed_flux"),
    ("short digest", {"samples": bytes(31)}, "malformed_flux"),
    ("flux edited", {"flux": _T(4, [-3, -1])}, "inconsistent_flux"),
    ("flux_se edited", {"flux_se": _T(4, [-3, 0])}, "inconsistent_flux"),
    ("qa ok with low r2", {"r2": _T(4, [-4, 8999])}, "inconsistent_flux"),
    ("qa ok with 4 samples", {"n": 4}, "inconsistent_flux"),
]


@pytest.mark.parametrize("changes,reason", [(c, r) for _, c, r in REJECTIONS], ids=[n for n, _, _ in REJECTIONS])
def test_rejections_are_typed(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(errors.ProtocolError) as caught:
        verify_flux(resign_map(_body(**changes)), PUB)
    assert caught.value.reason == reason, caught.value


def test_a_qa_flag_is_taken_as_signed_where_only_the_samples_could_tell() -> None:
    # ok and nonlinear both follow from n and R² above the thresholds; the samples decide, the record says
    record = flux.flux_from_map(_body(qa="nonlinear"))
    record.check_consistent()


def test_non_canonical_payload_is_refused() -> None:
    body = _body()
    payload = cbor2.dumps(_cbor2_value(body), canonical=False)  # insertion order, not the deterministic order
    assert payload != cbor.encode(body)
    protected = cose.protected_header(b"dev-001", flux.CONTENT_FORMAT_CBOR)
    message = cbor.encode(cbor.Tag(18, [protected, {}, payload, p256.sign(KEY, cose.sig_structure(protected, payload))]))
    with pytest.raises(errors.NonCanonical):
        verify_flux(message, PUB)


def test_kid_must_be_the_device() -> None:
    with pytest.raises(errors.KeyIdMismatch):
        verify_flux(resign_map(_body(), kid=b"dev-002"), PUB)


def test_bad_signature_and_other_key() -> None:
    message = bytearray(signed())
    message[-1] ^= 1
    with pytest.raises(errors.BadSignature):
        verify_flux(bytes(message), PUB)
    other = p256.public_key(p256.private_key_from_bytes(b"\x01" * 32))
    with pytest.raises(errors.BadSignature):
        verify_flux(signed(), other)


def test_signing_an_inconsistent_record_is_refused() -> None:
    record = session_flux(linear_samples(0.3, 1.0))
    record.flux_e3 += 1
    with pytest.raises(flux.InconsistentFlux):
        flux.sign_flux(record, KEY)


def test_malformed_cbor_is_typed() -> None:
    with pytest.raises(errors.MalformedCBOR):
        verify_flux(b"\xd2\x84\x43", PUB)
