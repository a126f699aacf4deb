"""The RP2040 assembly signer (carbontrace_protocol/p256_thumb) checked on the emulated Pico against OpenSSL.

``thumb_program(scalars)`` is a MicroPython program that asserts p256 loaded the assembly module and prints,
for each scalar k, the affine x of k*G from ``p256_thumb.base_x`` (``-1`` where the comb met P == +-Q) and
k**-1 mod n from ``p256_thumb.inverse_mod_n``; ``check_thumb_output`` compares every value with OpenSSL's
point (``cryptography``) and Python's modular inverse, and asserts the colliding scalars reported -1 (which
sends p256.sign to the generic path).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec

from carbontrace_protocol import p256, p256_table


def _entry_scalar(table: int, index: int) -> int:
    # the multiple of G in comb table `table`, entry `index` (scripts/gen_p256_table.py's layout)
    scalar = 1 << (p256_table.SPACING * (p256_table.TEETH - 1 + p256_table.TEETH * table))
    for tooth in range(p256_table.TEETH - 1):
        sign = 1 if (index >> tooth) & 1 else -1
        scalar += sign << (p256_table.SPACING * (tooth + p256_table.TEETH * table))
    return scalar


def _comb_column(scalar: int, table: int) -> int:
    halves = (scalar + (1 << 256) - 1) >> 1
    value = 0
    for tooth in range(p256_table.TEETH):
        shift = p256_table.SPACING * (tooth + p256_table.TEETH * table)
        value += (1 if (halves >> shift) & 1 else -1) << shift
    return value


def colliding_scalars() -> list[int]:
    """Odd k whose last comb addition is Q + Q (see tests/protocol/test_p256_comb.py), and their n - k."""
    found = []
    last = p256_table.TABLES - 1
    for index in range(1 << (p256_table.TEETH - 1)):
        for sign in (1, -1):
            q = sign * _entry_scalar(last, index)
            k = 2 * q % p256.N
            if k & 1 and _comb_column(k, last) == q:
                found += [k, p256.N - k]
    return found[:4]


def thumb_scalars() -> list[int]:
    n = p256.N
    picked = [1, 2, 3, n - 1, n - 2, (n - 1) // 2, (n + 1) // 2, 1 << 255, (1 << 128) - 1, (1 << 256) - 1 - n]
    picked += [int.from_bytes(hashlib.sha256(b"thumb scalar %d" % i).digest(), "big") % (n - 1) + 1 for i in range(8)]
    return picked + colliding_scalars()


def thumb_program(scalars: list[int]) -> str:
    return f"""
from carbontrace_protocol import p256
assert p256._thumb is not None, "p256 did not load the assembly module"
for k in {scalars!r}:
    print("k", p256._thumb.base_x(k), p256._thumb.inverse_mod_n(k))
"""


def check_thumb_output(stdout: str, scalars: list[int]) -> None:
    lines = [line.split() for line in stdout.strip().splitlines()]
    assert len(lines) == len(scalars), stdout
    colliding = set(colliding_scalars())
    assert colliding, "no colliding scalar for this table layout"
    for k, (kind, x_text, inverse_text) in zip(scalars, lines, strict=True):
        assert kind == "k"
        if k in colliding:
            assert int(x_text) == -1, k
        else:
            point = ec.derive_private_key(k, ec.SECP256R1()).public_key().public_numbers()
            assert int(x_text) == point.x, k
        assert int(inverse_text) == pow(k, -1, p256.N), k
