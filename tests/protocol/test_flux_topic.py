"""The flux topic and the largest signed flux record: the one definition in carbontrace_protocol/topics.py."""

from __future__ import annotations

from carbontrace_protocol import flux, p256, topics


def test_flux_topic_is_its_own_and_parses_back() -> None:
    topic = topics.flux_topic("site-1", "dev-7")
    assert topic == "carbontrace/v1/site-1/dev-7/flux"
    assert topics.parse_flux_topic(topic) == ("site-1", "dev-7")
    assert topics.parse_reading_topic(topic) is None
    assert topics.parse_flux_topic(topics.reading_topic("site-1", "dev-7")) is None
    assert topics.parse_flux_topic("carbontrace/v1//dev-7/flux") is None
    assert topics.site_fluxes("site-1") == "carbontrace/v1/site-1/+/flux"
    assert len(topics.flux_topic("s" * 64, "d" * 64)) <= topics.MAX_TOPIC_BYTES


def test_the_largest_signed_flux_is_max_flux_bytes() -> None:
    """64-character device id, 32-character firmware, the widest integers every field allows."""
    volume, area, temp, pressure = flux.MAX_VOLUME_ML, 1, flux.MIN_TEMP_MC, flux.MAX_PRESSURE_PA
    slope = -flux.MAX_SLOPE_E6
    record = flux.Flux(
        "d" * 64, "f" * 32, [(1 << 32) - 1 - flux.MAX_SESSION_S, (1 << 32) - 1], [(1 << 53) - 1 - 10**4, (1 << 53) - 1],
        flux.MAX_SAMPLES, bytes(32), volume, area, temp, pressure, slope, flux.MAX_SLOPE_E6, 9999,
        flux.flux_from_slope(slope, volume, area, temp, pressure),
        flux.flux_from_slope(flux.MAX_SLOPE_E6, volume, area, temp, pressure),
        flux.QA_NONLINEAR)  # the longest flag n and R² allow
    signed = flux.sign_flux(record, p256.private_key_from_bytes(b"\x07" * 32))
    assert len(signed) == topics.MAX_FLUX_BYTES
    assert topics.MAX_FLUX_BYTES < topics.MAX_PAYLOAD_BYTES
