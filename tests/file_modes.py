"""Checks that a tier's private files are what secret_files promises: 0600 files in 0700 directories."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def usual_umask() -> Iterator[None]:
    """The common 022 umask, under which a file created without care is world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def assert_private_sqlite(path: Path) -> None:
    """The database, its -wal and -shm (SQLite holds both while a connection is open) 0600 in a 0700 directory."""
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    assert oct(mode(path.parent)) == "0o700"
