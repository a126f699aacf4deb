"""ECDSA on NIST P-256 with SHA-256 (ES256) in pure Python: key derivation and signing. MicroPython-safe.

The device signs with this module; nonces are deterministic (RFC 6979, HMAC-SHA-256), so a signature
made on the device is byte-identical to the one CPython makes from the same key and message, and no RNG
is needed at signing time. Verification on servers uses OpenSSL (``carbontrace_protocol.verify``);
``verify`` here exists for devices and for cross-checks.

MicroPython traps avoided: ``pow(a, -1, m)`` returns 0 there, so inverses use Fermat's little theorem
(both moduli are prime); ``int.bit_length`` is missing, so scalars are walked over a fixed 256 bits;
only ``hashlib.sha256`` is assumed, so HMAC is written out.
"""

import hashlib

# typing does not exist on MicroPython: mypy treats this name as true, so the import below is for the type
# checker only, and the annotations naming it are strings (never evaluated on the device).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

_BLOCK = 64  # SHA-256 block size, for HMAC


def _inv(a: int, m: int) -> int:
    return pow(a, m - 2, m)


# Points in Jacobian coordinates (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is the point at infinity.
_INFINITY = (1, 1, 0)


def _double(pt: tuple[int, int, int]) -> tuple[int, int, int]:
    x1, y1, z1 = pt
    if z1 == 0 or y1 == 0:
        return _INFINITY
    # a = -3 doubling (dbl-2001-b)
    delta = z1 * z1 % P
    gamma = y1 * y1 % P
    beta = x1 * gamma % P
    alpha = 3 * (x1 - delta) * (x1 + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y1 + z1) * (y1 + z1) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return (x3, y3, z3)


def _add(p1: tuple[int, int, int], p2: tuple[int, int, int]) -> tuple[int, int, int]:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        if s1 != s2:
            return _INFINITY
        return _double(p1)
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return (x3, y3, z3)


def _multiply(k: int, pt: tuple[int, int, int]) -> tuple[int, int, int]:
    result = _INFINITY
    for i in range(255, -1, -1):
        result = _double(result)
        if (k >> i) & 1:
            result = _add(result, pt)
    return result


def _to_affine(pt: tuple[int, int, int]) -> tuple[int, int]:
    x, y, z = pt
    if z == 0:
        raise ValueError("point at infinity")
    zinv = _inv(z, P)
    zinv2 = zinv * zinv % P
    return (x * zinv2 % P, y * zinv2 * zinv % P)


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def _hmac_sha256(key: bytes, msg: bytes) -> bytes:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (_BLOCK - len(key))
    inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]) + msg).digest()
    return hashlib.sha256(bytes([b ^ 0x5C for b in key]) + inner).digest()


def _int32(value: int) -> bytes:
    return value.to_bytes(32, "big")


def private_key_from_bytes(seed: bytes) -> int:
    """A private scalar from 32 or more uniformly random bytes (the device's hardware RNG output).

    Reduces modulo n-1 and adds 1, so every seed gives a valid key in [1, n-1]; with 40+ bytes of seed
    the bias is negligible (FIPS 186-5 A.2.1, "extra random bits").
    """
    if len(seed) < 32:
        raise ValueError("need at least 32 random bytes for a P-256 key")
    return int.from_bytes(seed, "big") % (N - 1) + 1


def public_key(private_key: int) -> bytes:
    """The uncompressed SEC1 public key (65 bytes, 0x04 || X || Y) of a private scalar."""
    if not 1 <= private_key < N:
        raise ValueError("private key out of range")
    x, y = _to_affine(_multiply(private_key, (GX, GY, 1)))
    return b"\x04" + _int32(x) + _int32(y)


def _rfc6979_nonces(private_key: int, digest: bytes) -> "Iterator[int]":
    # RFC 6979 §3.2 for qlen == hlen == 256: bits2octets(h) = int(h) mod n.
    x = _int32(private_key)
    h1 = _int32(int.from_bytes(digest, "big") % N)
    v = b"\x01" * 32
    k = b"\x00" * 32
    k = _hmac_sha256(k, v + b"\x00" + x + h1)
    v = _hmac_sha256(k, v)
    k = _hmac_sha256(k, v + b"\x01" + x + h1)
    v = _hmac_sha256(k, v)
    while True:
        v = _hmac_sha256(k, v)
        candidate = int.from_bytes(v, "big")
        if 1 <= candidate < N:
            yield candidate
        k = _hmac_sha256(k, v + b"\x00")
        v = _hmac_sha256(k, v)


def sign(private_key: int, message: bytes) -> bytes:
    """ES256 signature of ``message``: raw r || s, 64 bytes (the COSE and IEEE P1363 form)."""
    digest = hashlib.sha256(message).digest()
    e = int.from_bytes(digest, "big")
    for k in _rfc6979_nonces(private_key, digest):
        x, _ = _to_affine(_multiply(k, (GX, GY, 1)))
        r = x % N
        if r == 0:
            continue
        s = _inv(k, N) * (e + r * private_key) % N
        if s == 0:
            continue
        return _int32(r) + _int32(s)
    raise ValueError("unreachable")  # pragma: no cover - the nonce generator never ends


def decode_public_key(sec1: bytes) -> tuple[int, int]:
    """(x, y) of an uncompressed SEC1 key; raises ValueError unless it is a point on P-256."""
    if len(sec1) != 65 or sec1[0] != 4:
        raise ValueError("public key must be 65-byte uncompressed SEC1 (0x04 || X || Y)")
    x = int.from_bytes(sec1[1:33], "big")
    y = int.from_bytes(sec1[33:65], "big")
    if not _on_curve(x, y):
        raise ValueError("public key is not a point on P-256")
    return (x, y)


def verify(public_key_sec1: bytes, message: bytes, signature_raw64: bytes) -> bool:
    """Pure-Python ES256 verification (slow; servers use OpenSSL). Returns True or False."""
    try:
        qx, qy = decode_public_key(public_key_sec1)
    except ValueError:
        return False
    if len(signature_raw64) != 64:
        return False
    r = int.from_bytes(signature_raw64[:32], "big")
    s = int.from_bytes(signature_raw64[32:], "big")
    if not (1 <= r < N and 1 <= s < N):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = _inv(s, N)
    point = _add(_multiply(e * w % N, (GX, GY, 1)), _multiply(r * w % N, (qx, qy, 1)))
    if point[2] == 0:
        return False
    x, _ = _to_affine(point)
    return x % N == r
