"""A self-describing backup directory: files copied in, each listed in manifest.json with its size and sha256.

Shared by `carbontrace cloud backup` and `carbontrace gateway backup` (cloud/backup.py, edge_gateway/backup.py),
which decide what goes in and where it goes back. The directory is 0700 and every file in it 0600: it holds
private keys. A SQLite database is copied with SQLite's online backup API, so the copy is one consistent
snapshot even while the owner writes to it (WAL included). Restoring checks every listed file's size and sha256
before anything is written: a damaged backup is refused, the file named, nothing restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carbontrace_host.secret_files import FILE_MODE, private_dir, write_secret

MANIFEST = "manifest.json"
FORMAT = "carbontrace-backup/1"


class BackupError(Exception):
    """The backup cannot be made or restored; the message says which file and why."""


@dataclass(frozen=True)
class BackedUpFile:
    role: str  # what it is ("database", "chain_key", "content", ...), so restore knows where it goes
    path: str  # relative to the backup directory, '/'-separated
    size: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"role": self.role, "path": self.path, "bytes": self.size, "sha256": self.sha256}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BackupWriter:
    """Files go into ``out`` (which must be absent or empty), the manifest last: a directory without one is an
    unfinished backup, never mistaken for a whole one."""

    def __init__(self, out: Path, kind: str) -> None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise BackupError(f"{out} exists and is not empty: back up into a new directory")
        self.out = private_dir(out)
        os.chmod(self.out, 0o700)
        self.kind = kind
        self.files: list[BackedUpFile] = []

    def _target(self, rel: str) -> Path:
        target = self.out / rel
        private_dir(target.parent)
        return target

    def record(self, role: str, rel: str) -> BackedUpFile:
        target = self.out / rel
        os.chmod(target, FILE_MODE)
        entry = BackedUpFile(role, rel, target.stat().st_size, _sha256_file(target))
        self.files.append(entry)
        return entry

    def add_file(self, role: str, source: Path, rel: str) -> BackedUpFile:
        write_secret(self._target(rel), source.read_bytes())
        return self.record(role, rel)

    def add_sqlite(self, role: str, source: Path, rel: str) -> BackedUpFile:
        """One consistent snapshot of a live SQLite database (its WAL's committed transactions included)."""
        if not source.is_file():
            raise BackupError(f"{source}: no such database")
        target = self._target(rel)
        write_secret(target, b"", exclusive=True)  # 0600 before SQLite writes a page
        src = sqlite3.connect(source, timeout=60.0)  # read-write: a read-only open of a WAL file needs its -shm
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                # A standalone file: no -wal beside it to be lost or mismatched on the way to another machine.
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        return self.record(role, rel)

    def add_tree(self, role: str, source: Path, rel: str) -> int:
        """Every regular file under ``source`` (temp files of unfinished writes skipped); returns the count."""
        count = 0
        if not source.is_dir():
            return 0
        for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")):
            self.add_file(role, path, f"{rel}/{path.relative_to(source).as_posix()}")
            count += 1
        return count

    def finish(self, **described: Any) -> dict[str, Any]:
        manifest = {
            "format": FORMAT,
            "kind": self.kind,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **described,
            "files": [f.as_json() for f in self.files],
        }
        write_secret(self.out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest


@dataclass(frozen=True)
class Backup:
    """A backup directory whose every file has been checked against its manifest."""

    root: Path
    manifest: dict[str, Any]
    files: tuple[BackedUpFile, ...]

    def of_role(self, role: str) -> list[BackedUpFile]:
        return [f for f in self.files if f.role == role]

    def one(self, role: str) -> BackedUpFile | None:
        found = self.of_role(role)
        return found[0] if found else None

    def source(self, entry: BackedUpFile) -> Path:
        return self.root / entry.path


def open_backup(root: Path, kind: str) -> Backup:
    """Read the manifest and check every file it lists (present, size, sha256); BackupError names the first bad
    one. Nothing is written."""
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as err:
        raise BackupError(f"{manifest_path}: missing (not a backup, or an unfinished one)") from err
    except json.JSONDecodeError as err:
        raise BackupError(f"{manifest_path}: not JSON ({err})") from err
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{manifest_path}: format {manifest.get('format')!r}, want {FORMAT!r}")
    if manifest.get("kind") != kind:
        raise BackupError(f"{manifest_path}: a {manifest.get('kind')} backup, not a {kind} backup")
    files = []
    for item in manifest.get("files", []):
        entry = BackedUpFile(str(item["role"]), str(item["path"]), int(item["bytes"]), str(item["sha256"]))
        path = (root / entry.path).resolve()
        if root.resolve() not in path.parents:
            raise BackupError(f"{entry.path}: outside the backup directory")
        if not path.is_file():
            raise BackupError(f"{entry.path}: listed in the manifest but missing")
        if path.stat().st_size != entry.size:
            raise BackupError(f"{entry.path}: {path.stat().st_size} bytes, the manifest says {entry.size}")
        if _sha256_file(path) != entry.sha256:
            raise BackupError(f"{entry.path}: sha256 does not match the manifest (corrupted)")
        files.append(entry)
    return Backup(root, manifest, tuple(files))


def occupied(path: Path) -> bool:
    """Whether restoring onto ``path`` would replace state: a non-empty file, or a directory with any file."""
    if path.is_dir():
        return any(p.is_file() for p in path.rglob("*"))
    return path.exists() and path.stat().st_size > 0


def restore_file(source: Path, target: Path) -> None:
    """Copy a backed-up file into place: 0600 in a 0700 directory, atomically."""
    write_secret(target, source.read_bytes())


def restore_sqlite(source: Path, target: Path) -> None:
    """Put a database back, with any -wal/-shm of the state it replaces removed: SQLite would apply a stale
    WAL to the restored file."""
    for stale in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        stale.unlink(missing_ok=True)
    restore_file(source, target)
