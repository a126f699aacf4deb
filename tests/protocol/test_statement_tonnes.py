"""Statement figures in tonnes: exact fixed-point strings from integer 1e-4 g (no float, no exponent form)."""

from __future__ import annotations

import pytest

from carbontrace_protocol.statement import tonnes


@pytest.mark.parametrize(
    ("grams_e4", "text"),
    [
        (0, "0.0000000000"),
        (5000, "0.0000005000"),
        (185710, "0.0000185710"),
        (10**10, "1.0000000000"),
        (120000000001, "12.0000000001"),
        (-37142, "-0.0000037142"),
    ],
)
def test_tonnes_are_fixed_point_with_ten_decimals(grams_e4: int, text: str) -> None:
    assert tonnes(grams_e4) == text
