"""Re-timing a reading taken before the device's first time sync. Pure; CPython (gateway and cloud).

A format-2 reading taken before the first sync has no wall time, only its boot counter (``boot``) and seconds
since that boot (``up``). A synced reading of the same device and the same boot carries both its wall time and
its ``up``, so it fixes the boot's wall-clock start: the unsynced reading's time is
``reference.timestamp - (reference.up - reading.up)``. The device never needs this (it ships only the
record format, carbontrace_protocol/reading.py); the gateway uses it to place a held reading, the cloud to
re-derive the time the gateway claims. Every refusal is a ``RetimeRejected`` with a stable reason.
"""

from __future__ import annotations

from carbontrace_protocol.errors import ProtocolError
from carbontrace_protocol.reading import Reading

# No re-timed reading is older than this (2024-01-01T00:00:00Z): a reference whose wall clock was still near
# 1970 or 2000 (a board's RTC before NTP) must not place readings there.
RETIME_FLOOR = 1704067200

NOT_UNSYNCED = "retime_not_unsynced"
BAD_REFERENCE = "retime_bad_reference"
DIFFERENT_DEVICE = "retime_different_device"
DIFFERENT_BOOT = "retime_different_boot"
INCONSISTENT_UP = "retime_inconsistent_up"
BEFORE_FLOOR = "retime_before_floor"
# Not raised here: the gateway's reason for a reading whose reference never came (edge_gateway), and the
# cloud's for an unsynced reading in a batch without evidence and for a claimed time that differs.
TIMEOUT = "retime_timeout"
# A format-1 reading taken before the sync: seconds since boot in its time field and no boot counter, so
# nothing can re-time it; the gateway and the cloud refuse it rather than store it near 1970.
UNSYNCED_WITHOUT_BOOT = "unsynced_without_boot"
NO_REFERENCE = "unsynced_without_reference"
MISMATCH = "retime_mismatch"


class RetimeRejected(ProtocolError):
    """The reading cannot be re-timed from this reference; ``reason`` is one of the codes above."""

    reason = "bad_retime"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_reference(reading: Reading) -> bool:
    """A reading that can re-time others of its boot: synced (a wall time) and carrying boot + up."""
    return reading.timestamp is not None and reading.boot is not None and reading.up is not None


def retimed_timestamp(reading: Reading, reference: Reading, floor: int = RETIME_FLOOR) -> int:
    """The wall time of unsynced ``reading``, from synced ``reference`` of the same device and boot."""
    if not reading.unsynced or reading.boot is None or reading.up is None:
        raise RetimeRejected(NOT_UNSYNCED, f"{reading.device_id} seq {reading.seq} is not an unsynced format-2 reading")
    if not is_reference(reference) or reference.timestamp is None or reference.up is None:
        raise RetimeRejected(BAD_REFERENCE, f"reference {reference.device_id} seq {reference.seq} has no wall time "
                                            "with boot and up")
    if reference.device_id != reading.device_id:
        raise RetimeRejected(DIFFERENT_DEVICE, f"reference is of {reference.device_id!r}, reading of "
                                               f"{reading.device_id!r}")
    if reference.boot != reading.boot:
        raise RetimeRejected(DIFFERENT_BOOT, f"reading of boot {reading.boot}, reference of boot {reference.boot}")
    # Within one boot, seq and up grow together: the reading came first (lower seq, no later up).
    if reading.seq >= reference.seq or reading.up > reference.up:
        raise RetimeRejected(
            INCONSISTENT_UP,
            f"reading seq {reading.seq} up {reading.up} is not before reference seq {reference.seq} up {reference.up}",
        )
    timestamp = reference.timestamp - (reference.up - reading.up)
    if timestamp < floor:
        raise RetimeRejected(BEFORE_FLOOR, f"re-timed to {timestamp}, before the floor {floor}")
    return timestamp


def required_timestamp(reading: Reading, reference: Reading | None, floor: int = RETIME_FLOOR) -> int:
    """The time an unsynced reading must be stored at, given the evidence a batch carries for it (None: none)."""
    if reference is None:
        raise RetimeRejected(NO_REFERENCE, f"{reading.device_id} seq {reading.seq} is unsynced and has no reference")
    return retimed_timestamp(reading, reference, floor)
