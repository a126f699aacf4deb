"""Which measurements a reading carries, as an integer bitmask: one bit per reading field.

The cloud's SQL index keeps this mask instead of the measured values (at rest, the values live only in the
sealed batch blob), so a type filter is a bit test. A field's bit is its position in views.READING_FIELDS;
stored masks depend on it, so fields are only ever appended there, never reordered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from carbontrace_protocol.reading import Reading
from carbontrace_protocol.views import READING_FIELDS, READING_TYPE_FIELDS, DataType, reading_content

FIELD_BITS: dict[str, int] = {name: 1 << position for position, name in enumerate(READING_FIELDS)}


def measures_in(content: Mapping[str, Any]) -> int:
    """The mask of the measurements a decoded reading (views.reading_content) carries."""
    return sum(bit for name, bit in FIELD_BITS.items() if content.get(name) is not None)


def measures_of(reading: Reading) -> int:
    return measures_in(reading_content(reading))


def fields_of(mask: int) -> frozenset[str]:
    """The reading fields a stored mask says the reading carries."""
    return frozenset(name for name, bit in FIELD_BITS.items() if mask & bit)


def types_mask(types: Iterable[DataType]) -> int:
    """The bits of the measurements the reading types select (a reading matches if it has any of them)."""
    return sum({FIELD_BITS[name] for t in types for name in READING_TYPE_FIELDS.get(t, ())})
