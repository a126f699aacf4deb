"""Writing secrets: one helper for every key file, API-key file and database the project writes.

A secret file is mode 0600 in a directory of mode 0700: every directory these helpers create is 0700; one that
exists already is left as it is (it may be /etc or a home directory, not ours to change). An existing file is
rewritten through a temp file and renamed, so it never exists with a wider mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path | str) -> Path:
    """Create ``path`` and its missing parents with mode 0700; an existing directory is left alone."""
    directory = Path(path)
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)  # whatever the umask
    return directory


def write_secret(path: Path | str, data: str | bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` as a 0600 file in a 0700 directory. ``exclusive``: fail if it exists."""
    target = Path(path)
    private_dir(target.parent)
    blob = data.encode() if isinstance(data, str) else data
    if exclusive:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        return target
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        os.chmod(temp, FILE_MODE)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


class SecretTooOpen(PermissionError):
    """A key file others may read (group or other permission bits): refused, not narrowed, because whoever could
    read it may already have a copy."""


def read_secret(path: Path | str, what: str) -> str:
    """The text of an existing secret file, refused (SecretTooOpen) if its mode is wider than 0600. Narrowing it
    here (as ``restrict`` does for a database we create) would hide that the key may have been copied."""
    target = Path(path)
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode & ~FILE_MODE & 0o777:
        raise SecretTooOpen(
            f"{what} {target} has mode {mode:04o}, readable or writable by others; a key file must be 0600 and "
            f"owned by the service's user. If someone may have read it, make a new key; otherwise "
            f"`chmod 600 {target}`."
        )
    return target.read_text()


def restrict(path: Path | str) -> None:
    """Make an existing file (one another library created) 0600."""
    target = Path(path)
    if target.exists():
        os.chmod(target, FILE_MODE)


def private_database(path: Path | str) -> Path:
    """Make a SQLite database file 0600 in a 0700 directory before SQLite first opens it: SQLite creates its
    -wal and -shm files with the database file's mode, so they are never wider either. Created empty here
    (O_EXCL, mode 0600 from the start), so it never exists with a wider mode; an existing one is narrowed."""
    target = Path(path)
    private_dir(target.parent)
    if not target.exists():
        try:
            write_secret(target, b"", exclusive=True)
        except FileExistsError:  # another process made it first
            pass
    restrict(target)
    for journal in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        restrict(journal)  # left by a run from before this existed
    return target
