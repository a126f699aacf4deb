"""Bounds for every integer in a query or a path, in one place.

An unbounded ``int`` parameter let 2**64 through to the database driver (a 500: SQLite and PostgreSQL
integers are 64-bit signed) and ``limit=-1`` meant "no limit" to SQLite (issue 13). Every router takes its
integers as one of these types, so the bound is a 422 before any query runs. Limits are refused past their
documented maximum rather than clamped silently, so a client learns the page size it gets.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Query

MAX_INT64 = 2**63 - 1
MAX_TIME = 2**62  # Unix seconds: far inside every database's BIGINT, arithmetic on it cannot overflow
MAX_LIMIT = 1000  # the default page maximum of the API
MAX_READINGS_LIMIT = 10_000  # a device's readings page (small rows)
MAX_CONSOLE_LIMIT = 500  # the console's newest-batches list

UnixSeconds = Annotated[int, Query(ge=0, le=MAX_TIME, description="unix seconds")]
OptionalUnixSeconds = Annotated[int | None, Query(ge=0, le=MAX_TIME, description="unix seconds")]
# A gateway's batch number (path), starting at 0.
BatchSeq = Annotated[int, Path(ge=0, le=MAX_INT64, description="the gateway's batch sequence number")]
# "After this sequence number": -1 = from the start.
AfterSeq = Annotated[int, Query(ge=-1, le=MAX_INT64, description="only items after this sequence number")]
# A size of the append-only log (its number of leaves).
TreeSize = Annotated[int, Query(ge=0, le=MAX_INT64, description="a size of the log (number of leaves)")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]
ReadingsLimit = Annotated[
    int, Query(ge=1, le=MAX_READINGS_LIMIT, description=f"page size, at most {MAX_READINGS_LIMIT}")
]
ConsoleLimit = Annotated[int, Query(ge=1, le=MAX_CONSOLE_LIMIT, description=f"page size, at most {MAX_CONSOLE_LIMIT}")]


PERIOD_EMPTY = "end must be after start"


def require_period(start: int | None, end: int | None) -> None:
    """A period [start, end) given by both ends is not empty: 422 otherwise, before any query runs (an empty or
    reversed period once reached the proof-bundle parser, which refuses it, as a 500)."""
    if start is not None and end is not None and end <= start:
        raise HTTPException(422, PERIOD_EMPTY)
