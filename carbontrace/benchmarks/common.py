"""What every benchmark part shares: result rows, timing, percentiles, the log2 fit, fast reading signers."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from carbontrace_protocol import cbor, cose, p256, topics
from carbontrace_protocol.reading import Reading


@dataclass
class Row:
    """One line of the table: our figure, the reference measured in the same run, and ours/reference."""

    section: str
    figure: str
    value: float | None
    unit: str
    reference: float | None = None
    reference_name: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.reference:
            return None
        return self.value / self.reference

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class SectionResult:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def best_rate(action: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Operations per second of the fastest of ``repeats`` runs (the least disturbed by the machine)."""
    return max(rate(count, timed(action)) for _ in range(repeats))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure reported is one that was observed)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def log2_slope(sizes: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against log2(size): growth per doubling of the log."""
    xs = [math.log2(n) for n in sizes]
    if len(xs) < 2:
        return math.nan
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(values)
    denominator = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)) / denominator


class DeviceKey:
    """A device identity for load generation: the protocol's key format, signed by OpenSSL for speed.

    The COSE bytes follow ``cose.sign1`` exactly (protected header, Sig_structure, raw r||s); only the ECDSA
    nonce differs from the pure-Python signer, so the gateway and cloud verify them the same way. The device's
    own signer is measured separately (firmware section).
    """

    def __init__(self, device_id: str, seed: bytes | None = None) -> None:
        self.device_id = device_id
        self.private = p256.private_key_from_bytes(seed or os.urandom(32))
        self.public = bytes(p256.public_key(self.private))
        self._openssl = ec.derive_private_key(self.private, ec.SECP256R1())
        self._protected = cose.protected_header(device_id.encode())

    def reading(self, seq: int, timestamp: int | None = None) -> Reading:
        return Reading(self.device_id, seq, int(time.time()) if timestamp is None else timestamp, "1.0.0",
                       co2_ppm=600 + seq % 400, temperature_centi_c=2150, humidity_centi_pct=4500,
                       energy_wh=1000 + 5 * seq, power_deci_w=1200)

    def sign(self, reading: Reading) -> bytes:
        payload = reading.encode()
        der = self._openssl.sign(cose.sig_structure(self._protected, payload), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return bytes(cbor.encode(cbor.Tag(cbor.TAG_COSE_SIGN1, [self._protected, {}, payload, signature])))

    def signed(self, seq: int, timestamp: int | None = None) -> bytes:
        return self.sign(self.reading(seq, timestamp))


def reading_topic(site_id: str, device_id: str) -> str:
    return topics.reading_topic(site_id, device_id)


def format_value(value: float | None, unit: str = "") -> str:
    """A figure as the bench prints it: thousands separated, fewer decimals the larger it is, n/a if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:,.2f}"
    else:
        text = f"{value:.4f}"
    return f"{text} {unit}".strip()
