"""Fault plan of the fleet simulator: which message gets which fault, decided by pure functions of the seed.

Every decision is a hash of (seed, fault kind, device id, sequence number), not a draw from a shared RNG,
so the same ``--seed`` picks the same readings for tampering and replay however the threads interleave
and however often a reading is re-sent (a re-sent reading is tampered again exactly like the first time).

What each fault looks like at the gateway (``edge_gateway.classify`` / ``edge_gateway.sequence``):

==================  ==========================================================================
fault               counted reason
==================  ==========================================================================
tamper signature    ``bad_signature`` (one bit of r||s flipped)
tamper payload      ``bad_signature`` (one bit of the signed CBOR payload flipped)
tamper structure    ``malformed_*`` (the COSE_Sign1 tag byte flipped: not a COSE_Sign1 any more)
replay duplicate    a duplicate (same bytes as the reading the gateway holds)
replay conflict     ``seq_conflict`` (an old seq re-signed with other content)
forged unknown      ``unknown_device`` (an id the registry does not know, with its own key)
forged impersonate  ``bad_signature`` (a registered id, its topic, signed with another key)
clock jump          ``clock_skew`` (timestamp further from gateway time than its limit)
==================  ==========================================================================
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from carbontrace_protocol import cose

TAMPER_MODES = ("signature", "payload", "structure")
SIGNATURE_BYTES = 64


def draw(seed: int, kind: str, device_id: str, n: int) -> float:
    """A number in [0, 1) fixed by its arguments."""
    digest = hashlib.sha256(f"{seed}|{kind}|{device_id}|{n}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def pick(seed: int, kind: str, device_id: str, n: int, choices: int) -> int:
    """An index in [0, choices) fixed by its arguments."""
    return int(draw(seed, kind, device_id, n) * choices)


@dataclass(frozen=True)
class TimedFault:
    """Something that happens ``at_s`` seconds after the fleet started and lasts ``seconds``."""

    seconds: float
    at_s: float

    def active(self, elapsed_s: float) -> bool:
        return self.at_s <= elapsed_s < self.at_s + self.seconds

    def started(self, elapsed_s: float) -> bool:
        return elapsed_s >= self.at_s


def parse_timed(text: str, default_at_s: float = 0.0) -> TimedFault:
    """``"SECONDS@AT"`` (or ``"SECONDS"``, starting at ``default_at_s``) -> TimedFault."""
    seconds_text, sep, at_text = text.partition("@")
    try:
        seconds = float(seconds_text)
        at_s = float(at_text) if sep else default_at_s
    except ValueError:
        raise ValueError(f"expected SECONDS@AT (numbers), got {text!r}") from None
    if at_s < 0:
        raise ValueError(f"the start of {text!r} must not be negative")
    return TimedFault(seconds, at_s)


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    broker_outage: TimedFault | None = None  # every device's link is cut for this period
    reboot_every: int = 0  # readings per boot; 0 = never reboot
    clock_jump: TimedFault | None = None  # .seconds = the jump, applied to one device from .at_s on
    tamper_rate: float = 0.0
    replay_rate: float = 0.0
    forged_devices: int = 0

    def __post_init__(self) -> None:
        for name in ("tamper_rate", "replay_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.reboot_every < 0 or self.forged_devices < 0:
            raise ValueError("reboot_every and forged_devices must not be negative")

    def clock_jump_device(self, device_count: int) -> int | None:
        """Index of the device whose clock jumps (fixed by the seed)."""
        if self.clock_jump is None or device_count == 0:
            return None
        return pick(self.seed, "clock_jump", "", 0, device_count)

    def tamper_mode(self, device_id: str, seq: int) -> str | None:
        if self.tamper_rate <= 0 or draw(self.seed, "tamper", device_id, seq) >= self.tamper_rate:
            return None
        return TAMPER_MODES[pick(self.seed, "tamper_mode", device_id, seq, len(TAMPER_MODES))]

    def replay_after(self, device_id: str, seq: int) -> tuple[int, bool] | None:
        """After the reading ``seq``: (how many readings back to replay, True for a re-signed conflict)."""
        if self.replay_rate <= 0 or draw(self.seed, "replay", device_id, seq) >= self.replay_rate:
            return None
        back = 1 + pick(self.seed, "replay_back", device_id, seq, 3)
        conflict = draw(self.seed, "replay_kind", device_id, seq) < 0.5
        return back, conflict

    def forged_kind(self, index: int) -> str:
        """Forged device ``index``: even ones use unknown ids, odd ones impersonate a registered device."""
        return "unknown" if index % 2 == 0 else "impersonate"


def flip_byte(message: bytes, mode: str, seed: int, device_id: str, seq: int) -> bytes:
    """``message`` with one bit flipped in the region ``mode`` names (the bit is fixed by the arguments)."""
    out = bytearray(message)
    if mode == "structure":
        out[0] ^= 0x01  # tag 18 (COSE_Sign1) becomes tag 19: no longer a COSE_Sign1
        return bytes(out)
    if mode == "signature":
        start, length = len(out) - SIGNATURE_BYTES, SIGNATURE_BYTES
    elif mode == "payload":
        payload = bytes(cose.parse_sign1(message).payload)
        start, length = message.find(payload), len(payload)
        if start < 0:
            raise ValueError("payload not found in its COSE_Sign1")
    else:
        raise ValueError(f"unknown tamper mode {mode!r}")
    position = start + pick(seed, "tamper_pos", device_id, seq, length)
    out[position] ^= 1 << pick(seed, "tamper_bit", device_id, seq, 8)
    return bytes(out)


def expected_tamper_reason(mode: str) -> str:
    """The gateway's reason for a message tampered in ``mode`` ("malformed" stands for any malformed_*)."""
    return "malformed" if mode == "structure" else "bad_signature"
