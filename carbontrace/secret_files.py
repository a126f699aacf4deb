"""Writing secrets: one helper for every key file, API-key file and database the project writes.

A secret file is mode 0600 in a directory of mode 0700 (the directory is created so, or tightened when it is ours
to create); an existing file is rewritten through a temp file and renamed, so it never exists with a wider mode.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path | str) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; tighten it to 0700 if it exists."""
    directory = Path(path)
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, DIR_MODE)
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


def restrict(path: Path | str) -> None:
    """Make an existing file (a database another library created) 0600 and its directory 0700."""
    target = Path(path)
    os.chmod(target.parent, DIR_MODE)
    if target.exists():
        os.chmod(target, FILE_MODE)
