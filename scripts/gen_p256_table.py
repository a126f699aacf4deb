"""Write carbontrace_protocol/p256_table.py, the signer's precomputed multiples of the P-256 generator G.

    python scripts/gen_p256_table.py           # rewrite the module
    python scripts/gen_p256_table.py --check   # exit 1 if the committed module differs from a fresh one

The table serves p256's signed-digit comb (see p256._multiply_base): TABLES tables of 2**(TEETH-1) affine
points; entry u of table s is the point c*G with
    c = 2**(SPACING*(TEETH-1 + TEETH*s)) + sum over m < TEETH-1 of (+-1) * 2**(SPACING*(m + TEETH*s)),
with +1 where bit m of u is set, -1 where it is clear.
Each entry is X || Y, 32 bytes each, big-endian, at offset (s * 2**(TEETH-1) + u) * 64 of one bytes constant:
compiled to .mpy (or frozen) it is one object, sliced where used, never a list of ints.
Computed with p256's generic double-and-add (the path verify uses), so the table is only as right as that;
tests/protocol/test_p256_comb.py regenerates it and also checks every entry against OpenSSL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from carbontrace_protocol import p256  # noqa: E402  (after the path set-up, for a plain `python scripts/...`)

MODULE_PATH = REPO_ROOT / "carbontrace_protocol" / "p256_table.py"
TEETH = 8  # bits per comb column: 2**7 entries per table with signed digits
TABLES = 2  # combs side by side: halves the doublings for twice the table (16 KiB)
SPACING = 256 // (TEETH * TABLES)  # doublings per sign, plus one
BYTES_PER_LINE = 16


def entry_scalar(table: int, index: int) -> int:
    """The multiple of G that entry ``index`` of comb table ``table`` holds (an integer, not reduced)."""
    top = SPACING * (TEETH - 1 + TEETH * table)
    scalar = 1 << top
    for tooth in range(TEETH - 1):
        sign = 1 if (index >> tooth) & 1 else -1
        scalar += sign << (SPACING * (tooth + TEETH * table))
    return scalar


def comb_table() -> bytes:
    out = bytearray()
    for table in range(TABLES):
        for index in range(1 << (TEETH - 1)):
            scalar = entry_scalar(table, index) % p256.N
            x, y = p256._to_affine(p256._multiply(scalar, (p256.GX, p256.GY, 1)))
            out += x.to_bytes(32, "big") + y.to_bytes(32, "big")
    return bytes(out)


def render_module(table: bytes) -> str:
    lines = [
        '"""Precomputed multiples of the P-256 generator for p256\'s signing comb. GENERATED: do not edit.',
        "",
        "Written by scripts/gen_p256_table.py (layout described there); tests/protocol/test_p256_comb.py checks",
        "that this file is what the script writes. A bytes constant, so a frozen or .mpy build keeps it as one",
        "object (in flash when frozen) that p256 slices, not as a list of integers.",
        '"""',
        "",
        f"TEETH = {TEETH}",
        f"TABLES = {TABLES}",
        f"SPACING = {SPACING}",
        "TABLE = (",
    ]
    for start in range(0, len(table), BYTES_PER_LINE):
        chunk = table[start : start + BYTES_PER_LINE]
        lines.append('    b"' + "".join(f"\\x{b:02x}" for b in chunk) + '"')
    lines.append(")")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed module, write nothing")
    args = parser.parse_args(argv)
    text = render_module(comb_table())
    if args.check:
        same = MODULE_PATH.is_file() and MODULE_PATH.read_text() == text
        if not same:
            sys.stderr.write(f"{MODULE_PATH.relative_to(REPO_ROOT)} is stale: run scripts/gen_p256_table.py\n")
        return 0 if same else 1
    MODULE_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
