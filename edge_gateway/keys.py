"""The gateway's own P-256 signing key: a file holding a 32-byte seed in hex, readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path

from carbontrace_protocol import p256


def create_key_file(path: Path, overwrite: bool = False) -> bytes:
    """Write a new key and return its public key (65-byte SEC1) for registration with the cloud."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to replace a gateway key")
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(seed.hex() + "\n")
    return public_key_of(load_private_key(path))


def load_private_key(path: Path) -> int:
    seed = bytes.fromhex(path.read_text().strip())
    if len(seed) < 32:
        raise ValueError(f"{path}: a gateway key needs at least 32 bytes of seed")
    key: int = p256.private_key_from_bytes(seed)
    return key


def public_key_of(private_key: int) -> bytes:
    return bytes(p256.public_key(private_key))
