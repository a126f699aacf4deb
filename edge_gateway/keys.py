"""The gateway's own P-256 signing key: a file holding a 32-byte seed in hex, readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path

from carbontrace_host.secret_files import read_secret, write_secret
from carbontrace_protocol import p256


def create_key_file(path: Path, overwrite: bool = False) -> bytes:
    """Write a new key and return its public key (65-byte SEC1) for registration with the cloud."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to replace a gateway key")
    seed = os.urandom(32)
    write_secret(path, seed.hex() + "\n")  # 0600 in a 0700 directory
    return public_key_of(load_private_key(path))


def load_private_key(path: Path) -> int:
    """The gateway's private key; SecretTooOpen if the file's mode is wider than 0600 (someone else could read
    it, as carbontrace_host.secret_files refuses for every key file)."""
    seed = bytes.fromhex(read_secret(path, "gateway key").strip())
    if len(seed) < 32:
        raise ValueError(f"{path}: a gateway key needs at least 32 bytes of seed")
    key: int = p256.private_key_from_bytes(seed)
    return key


def public_key_of(private_key: int) -> bytes:
    return bytes(p256.public_key(private_key))
