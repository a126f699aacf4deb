"""The fast signer (p256's comb over p256_table) against the generic path, OpenSSL, RFC 6979 and the old signer."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from carbontrace_protocol import p256, p256_table
from tests.micropython.mp_runner import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = load_script(REPO_ROOT / "scripts" / "gen_p256_table.py", "gen_p256_table_under_test")
# Signatures and keys made by p256.py before the comb (main 92a37aa, generic double-and-add).
OLD_SIGNER_VECTORS = Path(__file__).with_name("p256_sign_vectors.json")
G = (p256.GX, p256.GY, 1)


def affine(point: tuple[int, int, int]) -> tuple[int, int]:
    return p256._to_affine(point)


def openssl_point(scalar: int) -> tuple[int, int]:
    numbers = ec.derive_private_key(scalar, ec.SECP256R1()).public_key().public_numbers()
    return (numbers.x, numbers.y)


def openssl_verifies(public_sec1: bytes, message: bytes, raw: bytes) -> bool:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_sec1)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def test_committed_table_is_what_the_generator_writes() -> None:
    committed = (REPO_ROOT / "carbontrace_protocol" / "p256_table.py").read_text()
    assert committed == GENERATOR.render_module(GENERATOR.comb_table())
    assert GENERATOR.main(["--check"]) == 0


def test_table_layout_covers_256_bits() -> None:
    assert p256_table.SPACING * p256_table.TEETH * p256_table.TABLES == 256
    assert p256_table.SPACING % 8 == 0  # the comb reads whole bytes per tooth
    assert len(p256_table.TABLE) == p256_table.TABLES * (1 << (p256_table.TEETH - 1)) * 64


def test_every_table_entry_is_the_point_openssl_computes() -> None:
    table = p256_table.TABLE
    for s in range(p256_table.TABLES):
        for index in range(1 << (p256_table.TEETH - 1)):
            offset = ((s << (p256_table.TEETH - 1)) | index) * 64
            entry = (int.from_bytes(table[offset : offset + 32], "big"),
                     int.from_bytes(table[offset + 32 : offset + 64], "big"))
            assert entry == openssl_point(GENERATOR.entry_scalar(s, index) % p256.N), (s, index)


def edge_scalars() -> list[int]:
    n = p256.N
    picked = [1, 2, 3, 4, n - 1, n - 2, n - 3, (n - 1) // 2, (n + 1) // 2, 1 << 255, (1 << 255) + 1, (1 << 128) - 1]
    picked += [1 << i for i in range(0, 256, 15)]
    # scalars whose comb columns are all equal (every digit of one sign in a column)
    picked += [(1 << 256) - 1 - n, 0x5555555555555555555555555555555555555555555555555555555555555555]
    picked += [0xFFFF << (16 * i) for i in range(15)]
    picked += [int.from_bytes(hashlib.sha256(b"comb scalar %d" % i).digest(), "big") % (n - 1) + 1 for i in range(80)]
    return [k for k in picked if 1 <= k < n]


@pytest.mark.parametrize("k", edge_scalars())
def test_comb_equals_the_generic_multiply(k: int) -> None:
    assert affine(p256._multiply_base(k)) == affine(p256._multiply(k, G))


def test_comb_equals_openssl_on_both_parities() -> None:
    scalars = edge_scalars()
    assert {k & 1 for k in scalars} == {0, 1}  # even scalars take the n - k branch
    for k in scalars:
        assert affine(p256._multiply_base(k)) == openssl_point(k)


def test_signatures_are_byte_identical_to_the_old_signers() -> None:
    cases = json.loads(OLD_SIGNER_VECTORS.read_text())["cases"]
    assert len(cases) == 48
    parities = set()
    for case in cases:
        key = int(case["private_key"], 16)
        message = bytes.fromhex(case["msg"])
        signature = p256.sign(key, message)
        assert signature.hex() == case["sig"]
        assert p256.public_key(key).hex() == case["public_key"]
        assert openssl_verifies(bytes.fromhex(case["public_key"]), message, signature)
        nonce = next(p256._rfc6979_nonces(key, hashlib.sha256(message).digest()))
        parities.add(nonce & 1)
    assert parities == {0, 1}


def test_rfc6979_p256_sha256_vectors() -> None:
    """RFC 6979 A.2.5, P-256 with SHA-256 (no low-s normalisation there, nor in p256.sign)."""
    key = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
    assert p256.public_key(key).hex().upper() == (
        "04" "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
        "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
    )
    expected = {
        b"sample": ("EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
                    "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"),
        b"test": ("F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
                  "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"),
    }
    for message, (r, s) in expected.items():
        assert p256.sign(key, message).hex().upper() == r + s


def test_signatures_verify_with_openssl_and_the_pure_verifier() -> None:
    for i in range(24):
        key = p256.private_key_from_bytes(hashlib.sha256(b"fresh key %d" % i).digest())
        message = b"reading %d " % i * (i + 1)
        signature = p256.sign(key, message)
        public = p256.public_key(key)
        assert openssl_verifies(public, message, signature)
        assert p256.verify(public, message, signature)
        assert not p256.verify(public, message + b"x", signature)


@pytest.mark.parametrize("key_length", [0, 1, 31, 32, 63, 64, 65, 200])
def test_hmac_matches_the_standard_library(key_length: int) -> None:
    key = bytes((7 * i + 3) & 0xFF for i in range(key_length))
    for message in (b"", b"m", bytes(range(256))):
        assert p256._hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


def test_blinded_inverse_matches_pow_for_both_moduli() -> None:
    for modulus in (p256.P, p256.N):
        for i in range(64):
            a = int.from_bytes(hashlib.sha256(b"a %d" % i).digest(), "big") % (modulus - 1) + 1
            blind = int.from_bytes(hashlib.sha256(b"b %d" % i).digest(), "big") % (p256.N - 1) + 1
            assert p256._inv_blinded(a, modulus, blind) == pow(a, -1, modulus)
        assert p256._inv_blinded(1, modulus, 1) == 1
        assert p256._inv_blinded(modulus - 1, modulus, modulus - 1) == modulus - 1


def comb_column(scalar: int, table: int, position: int) -> int:
    """The multiple of G that comb column (table, position) adds for an odd scalar (its signed digits)."""
    halves = (scalar + (1 << 256) - 1) >> 1
    value = 0
    for tooth in range(p256_table.TEETH):
        shift = p256_table.SPACING * (tooth + p256_table.TEETH * table)
        value += (1 if (halves >> (position + shift)) & 1 else -1) << shift
    return value


def colliding_scalars() -> list[int]:
    """Odd scalars whose last comb addition is R + Q with R == Q modulo n (a doubling the formula cannot do):
    the scalar is 2Q mod n for Q the last column's own value (only the last column can wrap modulo n)."""
    found = []
    last_table = p256_table.TABLES - 1
    for index in range(1 << (p256_table.TEETH - 1)):
        for sign in (1, -1):
            q = sign * GENERATOR.entry_scalar(last_table, index)
            scalar = 2 * q % p256.N
            if scalar & 1 and comb_column(scalar, last_table, 0) == q:
                found.append(scalar)
    return found


def test_a_colliding_addition_still_gives_the_right_point() -> None:
    scalars = colliding_scalars()
    assert scalars, "no colliding scalar for this table layout: extend the search"
    for k in scalars:
        for scalar in (k, p256.N - k):  # the odd one and the even one that maps onto it
            assert affine(p256._multiply_base(scalar)) == openssl_point(scalar)
