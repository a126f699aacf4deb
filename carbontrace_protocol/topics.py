"""MQTT topic names and message size limits: the one definition. MicroPython-safe.

A device publishes its signed readings (QoS 1) on ``carbontrace/v1/{site}/{device}/reading`` and its retained
status JSON on ``carbontrace/v1/{site}/{device}/status``; the site's gateway subscribes to the readings of
its site. The broker's ACLs (carbontrace/broker_config.py) are built from these functions, never retyped.
"""

from carbontrace_protocol.reading import MAX_ID_LENGTH

TOPIC_PREFIX = "carbontrace/v1/"
READING = "reading"
STATUS = "status"
FLUX = "flux"  # signed chamber flux records (carbontrace_protocol/flux.py): their own data type, their own topic

# A worst-case reading (64-character device id, every field at its maximum) signs to 393 bytes
# (firmware/carbontrace_device/outbox.py sizes its slots from the same figure); a status message is a small
# JSON object. Anything larger is not a CarbonTrace message: the broker refuses it (max_packet_size) and the
# gateway rejects it before copying or decoding it.
MAX_READING_BYTES = 393
# A worst-case chamber flux record (64-character device id, 32-character firmware, every field at its extreme)
# signs to 523 bytes (tests/protocol/test_flux_topic.py builds it); the device's flux outbox sizes its slots from it.
MAX_FLUX_BYTES = 523
MAX_PAYLOAD_BYTES = 1024
# site and device ids are at most MAX_ID_LENGTH characters each (carbontrace_protocol.reading)
MAX_TOPIC_BYTES = len(TOPIC_PREFIX) + 2 * MAX_ID_LENGTH + 2 + len(READING)


def device_topic(site_id: str, device_id: str, kind: str) -> str:
    return TOPIC_PREFIX + site_id + "/" + device_id + "/" + kind


def reading_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, READING)


def status_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, STATUS)


def flux_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, FLUX)


def site_fluxes(site_id: str) -> str:
    """The gateway's subscription to every device's chamber fluxes on one site."""
    return device_topic(site_id, "+", FLUX)


def site_readings(site_id: str) -> str:
    """The gateway's subscription: every device's readings on one site."""
    return device_topic(site_id, "+", READING)


def site_statuses(site_id: str) -> str:
    return device_topic(site_id, "+", STATUS)


SHARE_PREFIX = "$share/"


def valid_share_group(group: str) -> bool:
    """A shared-subscription group name (MQTT 5 §4.8.2): non-empty, no level separator, no wildcard."""
    return 0 < len(group) <= MAX_ID_LENGTH and "/" not in group and "+" not in group and "#" not in group


def shared(group: str, topic_filter: str) -> str:
    """``topic_filter`` as a shared subscription of ``group``: the broker hands each message to one member
    (Mosquitto: round robin), so several ingest workers of one gateway share a site's load."""
    if not valid_share_group(group):
        raise ValueError("invalid shared-subscription group " + repr(group))
    return SHARE_PREFIX + group + "/" + topic_filter


# A gateway's ingest processes (edge_gateway/config.py ingest_workers), each with its own MQTT name below.
MAX_INGEST_WORKERS = 16


def worker_name(base: str, worker: int) -> str:
    """The MQTT username and client id of ingest worker ``worker`` of the gateway named ``base`` (worker 0 is
    the gateway itself). The broker binds a client id to its username, so every worker of a shared
    subscription needs its own; the broker's credentials (carbontrace/broker_config.py) use the same names."""
    if worker < 0:
        raise ValueError("worker index must be >= 0")
    if worker == 0:
        return base
    suffix = ".w" + str(worker)
    return base[: MAX_ID_LENGTH - len(suffix)] + suffix


def parse_reading_topic(topic: str) -> "tuple[str, str] | None":
    """(site id, device id) of a reading topic, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "carbontrace" or parts[1] != "v1" or parts[4] != READING:
        return None
    if not parts[2] or not parts[3]:
        return None
    return parts[2], parts[3]


def parse_flux_topic(topic: str) -> "tuple[str, str] | None":
    """(site id, device id) of a flux topic, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "carbontrace" or parts[1] != "v1" or parts[4] != FLUX:
        return None
    if not parts[2] or not parts[3]:
        return None
    return parts[2], parts[3]
