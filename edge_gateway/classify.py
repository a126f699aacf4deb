"""Message classification: is an MQTT reading or flux message acceptable, and if not, why. Pure (no I/O).

The gateway verifies everything a device sends before it touches the spool. ``classify_message`` answers
with a ``Verified`` reading or a ``Rejected`` reason, ``classify_flux`` (a chamber flux record on a device's
flux topic, carbontrace_protocol/flux.py) with a ``VerifiedFlux`` or a ``Rejected`` reason; the sequence
decision (duplicate, conflict, replay, gap) needs the spool's memory of the device and is made by
``edge_gateway.sequence`` inside the spool transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from carbontrace_protocol import topics
from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.flux import Flux, parse_signed_flux
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, valid_device_id
from carbontrace_protocol.retime import UNSYNCED_WITHOUT_BOOT
from carbontrace_protocol.verify import parse_sign1, verify_flux, verify_sign1

TOPIC_PREFIX = topics.TOPIC_PREFIX
ACTIVE = "active"
REVOKED = "revoked"
# Rejections of devices we do not know are counted under this label, so a stream of forged device ids
# cannot grow the metrics and the rejection table without bound.
UNREGISTERED = "_unregistered"


@dataclass(frozen=True)
class DeviceEntry:
    device_id: str
    public_key: bytes
    status: str


@dataclass(frozen=True)
class Verified:
    reading: Reading
    signed: bytes
    digest: bytes


@dataclass(frozen=True)
class Rejected:
    reason: str
    device_label: str
    detail: str


@dataclass(frozen=True)
class VerifiedFlux:
    flux: Flux
    signed: bytes
    digest: bytes


Classification = Verified | Rejected
DeviceLookup = Callable[[str], "DeviceEntry | None"]


def reading_topic(site_id: str, device_id: str) -> str:
    return topics.reading_topic(site_id, device_id)


def subscription(site_id: str, share_group: str | None = None) -> str:
    """The gateway's reading subscription, as a member of ``share_group`` when it has one."""
    readings = topics.site_readings(site_id)
    return readings if share_group is None else topics.shared(share_group, readings)


def subscriptions(site_id: str, share_group: str | None = None) -> list[str]:
    """Every subscription of the gateway: the site's readings and its chamber fluxes."""
    fluxes = topics.site_fluxes(site_id)
    return [subscription(site_id, share_group), fluxes if share_group is None else topics.shared(share_group, fluxes)]


def parse_topic(topic: str) -> tuple[str, str] | None:
    """(site id, device id) of a reading or flux topic, or None if the topic is neither."""
    return topics.parse_reading_topic(topic) or topics.parse_flux_topic(topic)


def is_flux_topic(topic: str) -> bool:
    return topics.parse_flux_topic(topic) is not None


def message_digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


def _topic_sender(
    parsed: tuple[str, str] | None, kind: str, topic: str, site_id: str, lookup: DeviceLookup
) -> tuple[str, DeviceEntry | None, str] | Rejected:
    """(the topic's device, its registry entry or None, the label its rejections count under) of a message on
    a device topic of ``kind`` (``parsed`` by the core's topic parser), or why it is refused: no such topic,
    or another site's."""
    if parsed is None:
        return Rejected("bad_topic", UNREGISTERED, f"not a {kind} topic: {topic[:120]!r}")
    topic_site, topic_device = parsed
    known = lookup(topic_device)
    label = topic_device if known is not None else UNREGISTERED
    if topic_site != site_id:
        return Rejected("wrong_site", label, f"topic site {topic_site!r} is not this gateway's site {site_id!r}")
    return topic_device, known, label


def classify_message(
    topic: str,
    payload: bytes,
    site_id: str,
    lookup: DeviceLookup,
    now: int,
    max_clock_skew_s: int,
) -> Classification:
    """Verify one reading message. Never raises: every defect becomes a ``Rejected`` with a reason."""
    sender = _topic_sender(topics.parse_reading_topic(topic), "reading", topic, site_id, lookup)
    if isinstance(sender, Rejected):
        return sender
    topic_device, known, label = sender
    try:
        message = parse_sign1(payload)
    except ProtocolError as err:
        return Rejected(err.reason, label, str(err))
    except Exception as err:  # the decoder must never take the gateway down, whatever the bytes
        return Rejected("malformed_message", label, f"{type(err).__name__}: {err}")
    try:
        kid = message.kid.decode()
    except UnicodeError:
        return Rejected("malformed_cose", label, "key id is not UTF-8")
    if not valid_device_id(kid):
        return Rejected("malformed_cose", label, "key id is not a device id")
    if kid != topic_device:
        return Rejected("topic_mismatch", label, f"topic device {topic_device!r} but key id {kid!r}")
    if known is None:
        return Rejected("unknown_device", UNREGISTERED, f"device {kid!r} is not registered for site {site_id!r}")
    if known.status != ACTIVE:
        return Rejected("revoked_device", label, f"device {kid!r} is {known.status}")
    try:
        reading = verify_sign1(message, known.public_key)  # parsed once, above
    except ProtocolError as err:
        return Rejected(err.reason, label, str(err))
    except Exception as err:
        return Rejected("malformed_message", label, f"{type(err).__name__}: {err}")
    timestamp = reading.timestamp
    if reading.flags & FLAG_TIME_NOT_SYNCED and reading.boot is None:
        # format 1 before a sync: seconds since boot in the time field, and no boot counter to re-time it by
        detail = f"seq {reading.seq}: unsynced time {timestamp} without a boot clock"
        return Rejected(UNSYNCED_WITHOUT_BOOT, label, detail)
    if not reading.flags & FLAG_TIME_NOT_SYNCED and timestamp is not None and abs(timestamp - now) > max_clock_skew_s:
        return Rejected(
            "clock_skew", label, f"timestamp {timestamp} is {timestamp - now:+d} s from gateway time"
        )
    return Verified(reading, bytes(payload), message_digest(payload))


def classify_flux(
    topic: str,
    payload: bytes,
    site_id: str,
    lookup: DeviceLookup,
    now: int,
    max_clock_skew_s: int,
) -> VerifiedFlux | Rejected:
    """Verify one chamber flux message. Never raises: every defect becomes a ``Rejected`` with a reason.

    The gateway recomputes what the record lets it (carbontrace_protocol/flux.py ``check_consistent``: the flux
    and its standard error from the slope and the chamber, the QA flag from n and R², every range), not the fit,
    whose samples it holds only as readings; a reading on the flux topic is ``not_a_flux``."""
    sender = _topic_sender(topics.parse_flux_topic(topic), "flux", topic, site_id, lookup)
    if isinstance(sender, Rejected):
        return sender
    topic_device, known, label = sender
    try:
        _message, record = parse_signed_flux(payload)
    except ProtocolError as err:
        return Rejected(err.reason, label, str(err))
    except Exception as err:  # the decoder must never take the gateway down, whatever the bytes
        return Rejected("malformed_message", label, f"{type(err).__name__}: {err}")
    if record.device_id != topic_device:
        return Rejected("topic_mismatch", label, f"topic device {topic_device!r} but key id {record.device_id!r}")
    if known is None:
        return Rejected("unknown_device", UNREGISTERED, f"device {record.device_id!r} is not registered for site "
                        f"{site_id!r}")
    if known.status != ACTIVE:
        return Rejected("revoked_device", label, f"device {record.device_id!r} is {known.status}")
    try:
        verify_flux(payload, known.public_key)
    except ProtocolError as err:
        return Rejected(err.reason, label, str(err))
    end = record.session[1]
    if abs(end - now) > max_clock_skew_s and end > now:
        # a session may be delivered late (the device's outbox), never from the future
        return Rejected("clock_skew", label, f"session end {end} is {end - now:+d} s from gateway time")
    return VerifiedFlux(record, bytes(payload), message_digest(payload))
