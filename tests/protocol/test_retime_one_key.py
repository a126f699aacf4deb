"""An unsynced reading's reference must verify under the very key the reading verifies under.

A proof bundle's verifier checks the reference with the item's device key (one boot, one key); ingestion used
to accept a reference signed by any key the device ever had (its current one or one rotated out), so a batch it
accepted could give a bundle that fails at reading_time. Both now apply the same rule.
"""

from __future__ import annotations

import pytest

from carbontrace_protocol import p256
from carbontrace_protocol.batch import aggregate_window, build_batch
from carbontrace_protocol.batch_verify import BatchRejected, verify_batch
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, sign_reading

START = 1_764_126_000
DEVICE = "dev-r"
OLD_KEY = p256.private_key_from_bytes(b"\x11" * 32)
NEW_KEY = p256.private_key_from_bytes(b"\x22" * 32)
GATEWAY_KEY = p256.private_key_from_bytes(b"\x33" * 32)


def _batch(unsynced_key: int, reference_key: int):  # type: ignore[no-untyped-def]
    unsynced = Reading(DEVICE, 1, None, "0.4.0", flags=FLAG_TIME_NOT_SYNCED, co2_ppm=610, boot=2, up=10,
                       energy_wh=1007)
    synced = Reading(DEVICE, 2, START + 50, "0.4.0", co2_ppm=611, boot=2, up=60, energy_wh=1014)
    signed = [sign_reading(unsynced, unsynced_key), sign_reading(synced, reference_key)]
    # the aggregate's energy runs use the unsynced reading's re-derived time, as the batch's retime states it
    aggregate = aggregate_window(DEVICE, START, START + 60, 10, [unsynced, synced], get_factor(), None,
                                 times={1: START})
    return build_batch(GATEWAY_KEY, "gw-r", "site-r", 0, (START, START + 60), signed, [aggregate], b"\x00" * 32,
                       START + 61, retimed={0: (START, signed[1])})


def _verify(batch):  # type: ignore[no-untyped-def]
    return verify_batch(batch, bytes(p256.public_key(GATEWAY_KEY)), lambda d: bytes(p256.public_key(NEW_KEY)),
                        lambda f: get_factor(f), lambda d: None,
                        rotated_device_keys=lambda d: [bytes(p256.public_key(OLD_KEY))])


def test_reading_and_reference_under_the_current_key() -> None:
    verified = _verify(_batch(NEW_KEY, NEW_KEY))
    assert verified.readings[0].timestamp == START


def test_a_reference_under_another_key_of_the_device_is_refused() -> None:
    # the reading was signed before a rotation (old key, quarantined as such), its reference after it
    with pytest.raises(BatchRejected) as err:
        _verify(_batch(OLD_KEY, NEW_KEY))
    assert (err.value.reason, err.value.leaf_index) == ("retime_bad_reference", 0)
