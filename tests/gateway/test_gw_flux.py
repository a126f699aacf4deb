"""Chamber fluxes at the gateway: classified on their own topic (verified under the device key, consistency and
ranges checked, a reading refused as not_a_flux), every rejection counted with its reason, accepted records
spooled durably; end to end over a real Mosquitto with the real gateway."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from gw_helpers import SITE, Device, InProcessGateway, make_gateway_key, make_stub, publish_all, topic, write_config
from hypothesis import given, settings
from hypothesis import strategies as st

from carbontrace.servers import wait_until
from carbontrace_protocol import cbor, cose, flux, p256, topics
from carbontrace_protocol.batch import decode_batch, leaf_count
from edge_gateway.classify import (
    UNREGISTERED,
    DeviceEntry,
    Rejected,
    VerifiedFlux,
    classify_flux,
    classify_message,
    parse_topic,
    subscriptions,
)
from edge_gateway.spool import Spool
from tests.conftest import MosquittoBroker

NOW = 1_780_000_000
A = Device("dev-a", seed=b"a" * 32)
R = Device("dev-r", seed=b"r" * 32)
REGISTRY = {"dev-a": DeviceEntry("dev-a", A.public, "active"), "dev-r": DeviceEntry("dev-r", R.public, "revoked")}


def record(device: Device, end: int = NOW - 30, first_seq: int = 100, slope: float = -0.3, noise: float = 1.0,
           seed: int = 1) -> flux.Flux:
    rng = random.Random(seed)
    samples = [(t, round(480 + slope * t + rng.gauss(0, noise))) for t in range(0, 181, 5)]
    return flux.compute_flux(device.device_id, "0.5.0", [end - 180, end], [first_seq, first_seq + 36], samples,
                             20000, 1000, 21000, 100900)


def signed(device: Device, **kwargs: object) -> bytes:
    return flux.sign_flux(record(device, **kwargs), device.key)  # type: ignore[arg-type]


def flux_topic(device_id: str, site: str = SITE) -> str:
    return topics.flux_topic(site, device_id)


def resigned(device: Device, body: dict[str, object]) -> bytes:
    payload = cbor.encode(body)
    protected = cose.protected_header(device.device_id.encode(), flux.CONTENT_FORMAT_CBOR)
    return cbor.encode(cbor.Tag(18, [protected, {}, payload, p256.sign(device.key, cose.sig_structure(protected, payload))]))


def classify(topic_: str, payload: bytes) -> VerifiedFlux | Rejected:
    return classify_flux(topic_, payload, SITE, REGISTRY.get, NOW, 300)


GOOD = signed(A)


def test_a_good_flux_is_verified() -> None:
    outcome = classify(flux_topic("dev-a"), GOOD)
    assert isinstance(outcome, VerifiedFlux)
    assert outcome.flux == record(A) and outcome.signed == GOOD and len(outcome.digest) == 32
    assert outcome.flux.flux_e3 < 0 and outcome.flux.qa == flux.QA_OK


EDITED = record(A).as_map()
EDITED["flux"] = cbor.Tag(4, [-3, 5])  # an uptake turned into an emission, re-signed by the device's own key
LOW_R2_AS_OK = record(A, slope=0.01, noise=8.0).as_map()
assert LOW_R2_AS_OK["qa"] == flux.QA_LOW_R2
LOW_R2_AS_OK["qa"] = flux.QA_OK


@pytest.mark.parametrize(
    ("topic_", "payload", "reason", "label"),
    [
        (topic("dev-a"), GOOD, "bad_topic", UNREGISTERED),  # a flux is not taken from the reading topic here
        (flux_topic("dev-a", site="site-b"), GOOD, "wrong_site", "dev-a"),
        (flux_topic("dev-a"), A.signed(7, timestamp=NOW), "not_a_flux", "dev-a"),  # a reading on the flux topic
        (flux_topic("dev-a"), b"\xff\x00garbage", "malformed_cbor", "dev-a"),
        (flux_topic("dev-a"), GOOD[:-9], "malformed_cbor", "dev-a"),
        (flux_topic("dev-a"), resigned(A, EDITED), "inconsistent_flux", "dev-a"),
        (flux_topic("dev-a"), resigned(A, LOW_R2_AS_OK), "inconsistent_flux", "dev-a"),
        (flux_topic("dev-a"), resigned(A, {**record(A).as_map(), "area_cm2": 0}), "malformed_flux", "dev-a"),
        (flux_topic("dev-x"), signed(Device("dev-x")), "unknown_device", UNREGISTERED),
        (flux_topic("dev-a"), signed(Device("dev-a")), "bad_signature", "dev-a"),  # the id, another key
        (flux_topic("dev-r"), signed(A), "topic_mismatch", "dev-r"),
        (flux_topic("dev-r"), signed(R), "revoked_device", "dev-r"),
        (flux_topic("dev-a"), signed(A, end=NOW + 3600), "clock_skew", "dev-a"),  # a session from the future
    ],
)
def test_every_bad_flux_is_rejected_with_its_reason(topic_: str, payload: bytes, reason: str, label: str) -> None:
    outcome = classify(topic_, payload)
    assert isinstance(outcome, Rejected), outcome
    assert (outcome.reason, outcome.device_label) == (reason, label), outcome.detail


def test_a_late_session_is_accepted() -> None:
    # the device's flux outbox held it through a broker outage: a day late is still that session's flux
    assert isinstance(classify(flux_topic("dev-a"), signed(A, end=NOW - 86400)), VerifiedFlux)


def test_a_flux_on_the_reading_topic_is_not_a_reading() -> None:
    outcome = classify_message(topic("dev-a"), GOOD, SITE, REGISTRY.get, NOW, 300)
    assert isinstance(outcome, Rejected) and outcome.reason == "missing_field"


def test_the_gateway_subscribes_to_readings_and_fluxes() -> None:
    assert subscriptions("s") == ["carbontrace/v1/s/+/reading", "carbontrace/v1/s/+/flux"]
    assert subscriptions("s", "g") == ["$share/g/carbontrace/v1/s/+/reading", "$share/g/carbontrace/v1/s/+/flux"]
    assert parse_topic(flux_topic("dev-a")) == (SITE, "dev-a")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_escape_as_exceptions(payload: bytes) -> None:
    assert isinstance(classify(flux_topic("dev-a"), payload), Rejected)


@pytest.mark.timeout(60)
def test_fluxes_are_spooled_durably_and_rejections_counted(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    a, b, revoked = Device("dev-a"), Device("dev-b"), Device("dev-r")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a, b], revoked=[revoked])
    config = write_config(tmp_path, key_file, stub.url, mosquitto)
    now = int(time.time())
    uptake = flux.sign_flux(record(a, end=now - 10), a.key)
    emission = flux.sign_flux(record(b, end=now - 10, slope=0.4, seed=2), b.key)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            publish_all(mosquitto, [
                (flux_topic("dev-a"), uptake),
                (flux_topic("dev-b"), emission),
                (flux_topic("dev-a"), uptake),  # an exact redelivery: a duplicate, not an error
                (flux_topic("dev-a"), flux.sign_flux(record(a, end=now - 5, seed=9), a.key)),  # same samples, other bytes
                (flux_topic("dev-a"), a.signed(3)),  # a reading on the flux topic
                (flux_topic("dev-a"), resigned(a, {**record(a, end=now - 10).as_map(),
                                                    "flux": cbor.Tag(4, [-3, 1])})),  # edited and re-signed
                (flux_topic("dev-r"), flux.sign_flux(record(revoked, end=now - 10), revoked.key)),
                (flux_topic("dev-a"), os.urandom(64)),
            ])
            publish_all(mosquitto, [(topic("dev-a"), a.signed(100))])  # readings still flow beside fluxes
            expected = {("dev-a", "flux_conflict"): 1, ("dev-a", "not_a_flux"): 1, ("dev-a", "inconsistent_flux"): 1,
                        ("dev-r", "revoked_device"): 1, ("dev-a", "malformed_cbor"): 1}
            wait_until(lambda: gw.spool().rejection_counts() == expected, 10, "flux rejections")
            wait_until(lambda: len(gw.spool().fluxes()) == 2, 10, "fluxes spooled")
            wait_until(lambda: "dev-a" in gw.spool().device_counts(), 10, "the reading")
            # the window closes: the fluxes go into its batch as flux leaves, which the cloud re-verifies
            wait_until(lambda: all(b is not None for *_, b in gw.spool().fluxes()), 10, "fluxes sealed")
            wait_until(lambda: gw.spool().stats()["unacked_batches"] == 0, 15, "batches acknowledged")
        uploaded = [decode_batch(blob) for blob in stub.state.blobs.values()]
        flux_leaves = sorted(body for batch in uploaded for _, body in batch.fluxes())
        assert flux_leaves == sorted([uptake, emission])
        for batch in uploaded:
            assert leaf_count(batch.header) == len(batch.leaves)
        # the gateway is gone; its spool file still holds both records' place, sealed into the uploaded batch
        spool = Spool(tmp_path / "spool.sqlite")
        held = spool.fluxes()
        spool.close()
        assert [(d, s) for d, s, _body, _ in held] == [("dev-a", 100), ("dev-b", 100)]
        assert all(batch_seq is not None for *_, batch_seq in held)
    finally:
        stub.stop()


@pytest.mark.timeout(60)
def test_a_flux_under_a_rotated_key_is_kept_after_a_registry_refresh(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """As for readings (test_gw_registry_refresh.py): the gateway's registry still has the old key; a bad
    signature from a known device refreshes it once and the flux verifies, instead of being acked and lost."""
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    config = write_config(tmp_path, key_file, stub.url, mosquitto)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT subscription")
            rotated = Device("dev-a")
            stub.state.devices["dev-a"] = (rotated.public, "active")
            signed_flux = flux.sign_flux(record(rotated, end=int(time.time()) - 10), rotated.key)
            publish_all(mosquitto, [(flux_topic("dev-a"), signed_flux)])
            wait_until(lambda: [body for _, _, body, _ in gw.spool().fluxes()] in ([signed_flux], [None]), 15,
                       "the rotated key's flux")
            assert gw.spool().rejection_counts() == {}
    finally:
        stub.stop()
