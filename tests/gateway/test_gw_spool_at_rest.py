"""The spool holds readings and the batch chain: only the gateway user may read it, from its creation."""

from __future__ import annotations

from pathlib import Path

from edge_gateway.spool import Spool
from tests.file_modes import assert_private_sqlite, mode, usual_umask


def test_a_new_spool_and_its_wal_and_shm_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spool.sqlite"
    with usual_umask():
        spool = Spool(path)  # creates the schema: the WAL and shared-memory files exist while it is open
        try:
            assert_private_sqlite(path)
        finally:
            spool.close()


def test_an_existing_wider_spool_is_narrowed_before_use(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    with usual_umask():
        Spool(path).close()
        path.chmod(0o644)
        spool = Spool(path)
        try:
            assert mode(path) == 0o600
        finally:
            spool.close()
