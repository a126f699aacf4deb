"""MQTT topic names and message size limits: the one definition. MicroPython-safe.

A device publishes its signed readings (QoS 1) on ``carbontrace/v1/{site}/{device}/reading`` and its retained
status JSON on ``carbontrace/v1/{site}/{device}/status``; the site's gateway subscribes to the readings of
its site. The broker's ACLs (carbontrace/broker_config.py) are built from these functions, never retyped.
"""

from carbontrace_protocol.reading import MAX_ID_LENGTH

TOPIC_PREFIX = "carbontrace/v1/"
READING = "reading"
STATUS = "status"

# A worst-case reading (64-character device id, every field at its maximum) signs to 393 bytes
# (firmware/carbontrace_device/outbox.py sizes its slots from the same figure); a status message is a small
# JSON object. Anything larger is not a CarbonTrace message: the broker refuses it (max_packet_size) and the
# gateway rejects it before copying or decoding it.
MAX_READING_BYTES = 393
MAX_PAYLOAD_BYTES = 1024
# site and device ids are at most MAX_ID_LENGTH characters each (carbontrace_protocol.reading)
MAX_TOPIC_BYTES = len(TOPIC_PREFIX) + 2 * MAX_ID_LENGTH + 2 + len(READING)


def device_topic(site_id: str, device_id: str, kind: str) -> str:
    return TOPIC_PREFIX + site_id + "/" + device_id + "/" + kind


def reading_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, READING)


def status_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, STATUS)


def site_readings(site_id: str) -> str:
    """The gateway's subscription: every device's readings on one site."""
    return device_topic(site_id, "+", READING)


def site_statuses(site_id: str) -> str:
    return device_topic(site_id, "+", STATUS)


def parse_reading_topic(topic: str) -> "tuple[str, str] | None":
    """(site id, device id) of a reading topic, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "carbontrace" or parts[1] != "v1" or parts[4] != READING:
        return None
    if not parts[2] or not parts[3]:
        return None
    return parts[2], parts[3]
