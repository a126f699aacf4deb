"""docs/protocol.md's worked example is what the code produces, byte for byte."""

from __future__ import annotations

import hashlib
import re

from carbontrace_protocol import cose, p256
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.verify import verify_reading
from tests.conftest import REPO_ROOT


def _hex_only(block: str) -> bytes:
    """Hex bytes of an annotated block: each line's leading hex tokens, up to its first other word."""
    digits = []
    for line in block.splitlines():
        for token in line.split():
            if not re.fullmatch(r"[0-9a-f]+", token):
                break
            digits.append(token)
    return bytes.fromhex("".join(digits))


def examples() -> dict[str, bytes]:
    text = (REPO_ROOT / "docs" / "protocol.md").read_text()
    return {name: _hex_only(block) for name, block in re.findall(r"<!-- example:(\w+) -->\n```hex\n(.*?)```", text, re.S)}


def test_worked_example_matches_the_code() -> None:
    ex = examples()
    assert set(ex) == {"private_key", "public_key", "payload", "protected", "signature", "message"}
    d = p256.private_key_from_bytes(hashlib.sha256(b"carbontrace worked example").digest())
    assert ex["private_key"] == d.to_bytes(32, "big")
    assert ex["public_key"] == p256.public_key(d)
    reading = Reading(
        "dev-001", 42, 1764126317, "0.1.0", co2_ppm=612, temperature_centi_c=2345, humidity_centi_pct=4512,
        energy_wh=123456, power_deci_w=12345,
    )
    assert ex["payload"] == reading.encode()
    assert len(ex["payload"]) == 144
    assert ex["protected"] == cose.protected_header(b"dev-001")
    message = sign_reading(reading, d)
    assert ex["message"] == message
    assert len(message) == 231
    assert ex["signature"] == cose.parse_sign1(message).signature
    assert verify_reading(ex["message"], ex["public_key"]) == reading
