"""P-256 signing arithmetic in Cortex-M0+ assembly (RP2040) on preallocated buffers: no heap per field step.

Only for MicroPython built for armv6m (scripts/build_firmware.py compiles this module with -march=armv6m,
firmware/manifest.py NATIVE_MODULES); everywhere else importing it fails and p256 keeps its pure-Python
path, which gives the same signatures (tests/micropython/test_mp_pico_emulator.py compares them).

A field element is 16 little-endian 16-bit limbs in a 32-byte bytearray (so int.to_bytes(32, "little") is
the limb array). The RP2040's MULS is 32x32->32 bits, so limbs are 16 bits: a limb product plus two limbs
fits in 32 bits. Multiplication is Montgomery's (R = 2**256), for p and for n alike: a context bytearray
holds the modulus (16 limbs), -modulus**-1 mod 2**16 (limb 16) and a 34-limb scratch product (from byte 36).
Every routine runs the same instruction sequence for every value (no data-dependent branch; the final
subtraction is a masked select). The Python code around it branches only on public data (loop counters, the
public exponents of the inverses) and on the comb's table index, which is secret, as in the Python path.
"""

import micropython

from carbontrace_protocol import p256_table

_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_R = 1 << 256


@micropython.asm_thumb
def _mont_mul(r0, r1, r2, r3):  # out, a, b, ctx: out = a*b/R mod m (a, b < m; out may be a or b)
    push({r0})
    mov(r0, r3)
    add(r0, 36)
    mov(r4, 0)
    mov(r5, 34)
    mov(r6, r0)
    label(ZERO)
    strh(r4, [r6, 0])
    add(r6, 2)
    sub(r5, 1)
    bne(ZERO)
    mov(r7, 16)
    label(OUTER1)
    push({r0, r1, r2, r7})
    ldrh(r1, [r1, 0])
    mov(r7, 16)
    mov(r4, 0)
    label(ROW1)
    ldrh(r5, [r2, 0])
    mul(r5, r1)
    ldrh(r6, [r0, 0])
    add(r5, r5, r6)
    add(r5, r5, r4)
    strh(r5, [r0, 0])
    lsr(r4, r5, 16)
    add(r0, 2)
    add(r2, 2)
    sub(r7, 1)
    bne(ROW1)
    strh(r4, [r0, 0])
    pop({r0, r1, r2, r7})
    add(r0, 2)
    add(r1, 2)
    sub(r7, 1)
    bne(OUTER1)
    sub(r0, 32)
    mov(r7, 16)
    label(OUTER2)
    push({r0, r3, r7})
    ldrh(r1, [r0, 0])
    ldrh(r5, [r3, 32])
    mul(r1, r5)
    lsl(r1, r1, 16)
    lsr(r1, r1, 16)
    mov(r2, r3)
    mov(r7, 16)
    mov(r4, 0)
    label(ROW2)
    ldrh(r5, [r2, 0])
    mul(r5, r1)
    ldrh(r6, [r0, 0])
    add(r5, r5, r6)
    add(r5, r5, r4)
    strh(r5, [r0, 0])
    lsr(r4, r5, 16)
    add(r0, 2)
    add(r2, 2)
    sub(r7, 1)
    bne(ROW2)
    pop({r0, r3, r7})
    mov(r1, r0)
    add(r1, 32)
    mov(r2, r7)
    add(r2, 2)
    label(PROP)
    ldrh(r5, [r1, 0])
    add(r5, r5, r4)
    strh(r5, [r1, 0])
    lsr(r4, r5, 16)
    add(r1, 2)
    sub(r2, 1)
    bne(PROP)
    add(r0, 2)
    sub(r7, 1)
    bne(OUTER2)
    # r0 = the 17-limb result (below 2m); out = it - m unless that borrows
    pop({r1})
    mov(r4, 0)
    mov(r7, 16)
    mov(r2, r3)
    push({r0, r1})
    label(SUB1)
    ldrh(r5, [r0, 0])
    ldrh(r6, [r2, 0])
    sub(r5, r5, r6)
    sub(r5, r5, r4)
    strh(r5, [r1, 0])
    lsr(r4, r5, 31)
    add(r0, 2)
    add(r1, 2)
    add(r2, 2)
    sub(r7, 1)
    bne(SUB1)
    ldrh(r5, [r0, 0])
    sub(r5, r5, r4)
    lsr(r4, r5, 31)
    neg(r4, r4)
    pop({r0, r1})
    mov(r7, 16)
    label(SEL)
    ldrh(r5, [r1, 0])
    ldrh(r6, [r0, 0])
    eor(r6, r5)
    and_(r6, r4)
    eor(r5, r6)
    strh(r5, [r1, 0])
    add(r0, 2)
    add(r1, 2)
    sub(r7, 1)
    bne(SEL)


@micropython.asm_thumb
def _mod_add(r0, r1, r2, r3):  # out, a, b, ctx: out = a + b mod m (a, b < m)
    push({r0})
    mov(r0, r3)
    add(r0, 36)
    push({r0})
    mov(r4, 0)
    mov(r7, 16)
    label(ADD1)
    ldrh(r5, [r1, 0])
    ldrh(r6, [r2, 0])
    add(r5, r5, r6)
    add(r5, r5, r4)
    strh(r5, [r0, 0])
    lsr(r4, r5, 16)
    add(r0, 2)
    add(r1, 2)
    add(r2, 2)
    sub(r7, 1)
    bne(ADD1)
    strh(r4, [r0, 0])
    pop({r0})
    pop({r1})
    mov(r4, 0)
    mov(r7, 16)
    mov(r2, r3)
    push({r0, r1})
    label(SUB1)
    ldrh(r5, [r0, 0])
    ldrh(r6, [r2, 0])
    sub(r5, r5, r6)
    sub(r5, r5, r4)
    strh(r5, [r1, 0])
    lsr(r4, r5, 31)
    add(r0, 2)
    add(r1, 2)
    add(r2, 2)
    sub(r7, 1)
    bne(SUB1)
    ldrh(r5, [r0, 0])
    sub(r5, r5, r4)
    lsr(r4, r5, 31)
    neg(r4, r4)
    pop({r0, r1})
    mov(r7, 16)
    label(SEL)
    ldrh(r5, [r1, 0])
    ldrh(r6, [r0, 0])
    eor(r6, r5)
    and_(r6, r4)
    eor(r5, r6)
    strh(r5, [r1, 0])
    add(r0, 2)
    add(r1, 2)
    sub(r7, 1)
    bne(SEL)


@micropython.asm_thumb
def _mod_sub(r0, r1, r2, r3):  # out, a, b, ctx: out = a - b mod m (a, b < m)
    mov(r4, 0)
    mov(r7, 16)
    push({r0})
    label(S1)
    ldrh(r5, [r1, 0])
    ldrh(r6, [r2, 0])
    sub(r5, r5, r6)
    sub(r5, r5, r4)
    strh(r5, [r0, 0])
    lsr(r4, r5, 31)
    add(r0, 2)
    add(r1, 2)
    add(r2, 2)
    sub(r7, 1)
    bne(S1)
    neg(r4, r4)
    pop({r0})
    mov(r7, 16)
    mov(r1, 0)
    label(S2)
    ldrh(r5, [r0, 0])
    ldrh(r6, [r3, 0])
    and_(r6, r4)
    add(r5, r5, r6)
    add(r5, r5, r1)
    strh(r5, [r0, 0])
    lsr(r1, r5, 16)
    add(r0, 2)
    add(r3, 2)
    sub(r7, 1)
    bne(S2)


@micropython.asm_thumb
def _load_be(r0, r1, r2):  # out, table, offset: out = the 32 big-endian bytes at table[offset:], reversed
    add(r1, r1, r2)
    add(r1, 31)
    mov(r7, 32)
    label(COPY)
    ldrb(r5, [r1, 0])
    strb(r5, [r0, 0])
    add(r0, 1)
    sub(r1, 1)
    sub(r7, 1)
    bne(COPY)


def _limbs(value):
    return bytearray(value.to_bytes(32, "little"))


def _context(modulus):
    inverse = 1  # modulus**-1 mod 2**16 by Newton's iteration (pow(x, -1, m) is 0 on MicroPython)
    for _ in range(5):
        inverse = inverse * (2 - modulus * inverse) & 0xFFFF
    ctx = bytearray(104)
    ctx[0:32] = modulus.to_bytes(32, "little")
    ctx[32:34] = ((-inverse) & 0xFFFF).to_bytes(2, "little")
    return ctx


def _exponent_digits(exponent):  # 4-bit digits, most significant first: walked without bignum shifts
    return bytes((exponent >> i) & 15 for i in range(252, -1, -4))


_CTX_P = _context(_P)
_CTX_N = _context(_N)
_R2_P = _limbs(_R * _R % _P)
_R2_N = _limbs(_R * _R % _N)
_ONE_P = _limbs(_R % _P)  # 1 in Montgomery form
_ONE_N = _limbs(_R % _N)
_PLAIN_ONE = _limbs(1)
_ZERO = bytes(32)
_DIGITS_P = _exponent_digits(_P - 2)
_DIGITS_N = _exponent_digits(_N - 2)

# working buffers, reused by every sign (one sign at a time: MicroPython on a board has one thread here)
_X1 = bytearray(32)
_Y1 = bytearray(32)
_Z1 = bytearray(32)
_X2 = bytearray(32)
_Y2 = bytearray(32)
_Y2_NEG = bytearray(32)
_T1 = bytearray(32)
_T2 = bytearray(32)
_T3 = bytearray(32)
_T4 = bytearray(32)
_T5 = bytearray(32)
_ACC = bytearray(32)
_BASE = bytearray(32)
_POWERS = [bytearray(32) for _ in range(16)]  # base**0 .. base**15 for the windowed exponentiation


def _pow_mont(out, base, digits, one, ctx):
    """out = base**e in Montgomery form, e given by its 4-bit digits (public), with a fixed 4-bit window:
    14 multiplies for the powers, then 4 squarings and one multiply per digit (by base**0 for a zero digit:
    the same sequence for every exponent). 334 products instead of 256 + popcount(e) (384 for p - 2)."""
    mul = _mont_mul
    powers = _POWERS
    powers[0][:] = one
    powers[1][:] = base
    i = 2
    while i < 16:
        mul(powers[i], powers[i - 1], base, ctx)
        i += 1
    out[:] = one
    for digit in digits:
        mul(out, out, out, ctx)
        mul(out, out, out, ctx)
        mul(out, out, out, ctx)
        mul(out, out, out, ctx)
        mul(out, out, powers[digit], ctx)


def inverse_mod_n(k: int) -> int:
    """k**-1 mod n for 1 <= k < n, by Fermat: k**(n-2) (_pow_mont)."""
    mul = _mont_mul
    base = _BASE
    base[:] = k.to_bytes(32, "little")
    mul(base, base, _R2_N, _CTX_N)
    _pow_mont(_ACC, base, _DIGITS_N, _ONE_N, _CTX_N)
    mul(_ACC, _ACC, _PLAIN_ONE, _CTX_N)
    return int.from_bytes(_ACC, "little")


def base_x(k: int) -> int:
    """The affine x of k*G for 1 <= k < n, or -1 if the comb met P == +-Q (the caller redoes that k).

    The same comb as p256._multiply_base (see its docstring for the recoding), on the buffers above.
    """
    mul = _mont_mul
    add = _mod_add
    sub = _mod_sub
    load = _load_be
    ctx = _CTX_P
    r2 = _R2_P
    x1 = _X1
    y1 = _Y1
    z1 = _Z1
    x2 = _X2
    y2 = _Y2
    t1 = _T1
    t2 = _T2
    t3 = _T3
    t4 = _T4
    t5 = _T5
    y_choice = (_Y2_NEG, _Y2)
    zero = _ZERO
    odd = k & 1
    scalar = (_N - k, k)[odd]
    digits = ((scalar + _R - 1) >> 1).to_bytes(32, "big")
    table = p256_table.TABLE
    spacing = p256_table.SPACING
    spacing_bytes = spacing >> 3
    teeth = p256_table.TEETH
    tables = p256_table.TABLES
    index_mask = (1 << (teeth - 1)) - 1
    first = True
    j = spacing - 1
    while j >= 0:
        if not first:
            # doubling, a = -3 (dbl-2001-b): t1 delta, t2 gamma, t3 beta, t4 alpha
            mul(t1, z1, z1, ctx)
            mul(t2, y1, y1, ctx)
            mul(t3, x1, t2, ctx)
            sub(t4, x1, t1, ctx)
            add(t5, x1, t1, ctx)
            mul(t4, t4, t5, ctx)
            add(t5, t4, t4, ctx)
            add(t4, t5, t4, ctx)
            mul(z1, y1, z1, ctx)
            add(z1, z1, z1, ctx)
            add(t3, t3, t3, ctx)
            add(t3, t3, t3, ctx)  # 4 beta
            mul(x1, t4, t4, ctx)
            sub(x1, x1, t3, ctx)
            sub(x1, x1, t3, ctx)  # alpha**2 - 8 beta
            sub(t5, t3, x1, ctx)
            mul(t5, t4, t5, ctx)
            mul(t2, t2, t2, ctx)
            add(t2, t2, t2, ctx)
            add(t2, t2, t2, ctx)
            add(t2, t2, t2, ctx)
            sub(y1, t5, t2, ctx)
        byte_j = 31 - (j >> 3)
        shift = j & 7
        s = 0
        while s < tables:
            base = byte_j - spacing_bytes * teeth * s
            index = 0
            m = 0
            while m < teeth - 1:
                index |= ((digits[base - spacing_bytes * m] >> shift) & 1) << m
                m += 1
            top = (digits[base - spacing_bytes * (teeth - 1)] >> shift) & 1
            index ^= (top - 1) & index_mask
            offset = ((s << (teeth - 1)) | index) << 6
            load(x2, table, offset)
            mul(x2, x2, r2, ctx)
            load(y2, table, offset + 32)
            mul(y2, y2, r2, ctx)
            sub(y_choice[0], zero, y2, ctx)
            y = y_choice[top]
            s += 1
            if first:
                x1[:] = x2
                y1[:] = y
                z1[:] = _ONE_P
                first = False
                continue
            # mixed addition (x1, y1, z1) + (x2, y, 1): t1 z1z1, t2 h, t3 r, t4 hh, t5 hhh
            mul(t1, z1, z1, ctx)
            mul(t2, x2, t1, ctx)
            sub(t2, t2, x1, ctx)
            mul(t3, z1, t1, ctx)
            mul(t3, y, t3, ctx)
            sub(t3, t3, y1, ctx)
            mul(t4, t2, t2, ctx)
            mul(t5, t2, t4, ctx)
            mul(t4, x1, t4, ctx)  # v
            mul(z1, z1, t2, ctx)
            mul(x1, t3, t3, ctx)
            sub(x1, x1, t5, ctx)
            sub(x1, x1, t4, ctx)
            sub(x1, x1, t4, ctx)
            sub(t4, t4, x1, ctx)
            mul(t4, t3, t4, ctx)
            mul(t5, y1, t5, ctx)
            sub(y1, t4, t5, ctx)
        j -= 1
    if z1 == zero:
        return -1
    _pow_mont(t1, z1, _DIGITS_P, _ONE_P, ctx)  # 1/Z
    mul(t1, t1, t1, ctx)
    mul(t1, x1, t1, ctx)
    mul(t1, t1, _PLAIN_ONE, ctx)
    return int.from_bytes(t1, "little")
