"""The cloud's SQLite database and content store are the cloud user's alone, from their creation."""

from __future__ import annotations

from pathlib import Path

from cloud.content_store import LocalContentStore
from cloud.db import make_engine, migrate
from tests.file_modes import assert_private_sqlite, mode, usual_umask


def test_the_sqlite_database_and_its_wal_and_shm_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "cloud.db"
    with usual_umask():
        engine = make_engine(f"sqlite:///{path}")
        migrate(engine)
        with engine.connect():
            assert_private_sqlite(path)
        engine.dispose()


def test_the_local_content_store_directories_are_0700(tmp_path: Path) -> None:
    directory = tmp_path / "blobs"
    with usual_umask():
        store = LocalContentStore(directory)
        cid = store.put(b"a sealed blob")
    blob = store._path(cid)
    assert (mode(directory), mode(blob.parent), mode(blob)) == (0o700, 0o700, 0o600)
