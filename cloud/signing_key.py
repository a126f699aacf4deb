"""The cloud's own P-256 key (signs checkpoints): a file holding a 32-byte seed in hex."""

from __future__ import annotations

import secrets
from pathlib import Path

from carbontrace_host.secret_files import read_secret, write_secret
from carbontrace_protocol import p256


def load_or_create(
    path: str, allow_create: bool, what: str = "cloud signing key", made_by: str = "carbontrace cloud keygen"
) -> int:
    """The private key in ``path``; created (mode 0600) only where allowed (development). The cloud's blob
    encryption key (``what="cloud encryption key"``) is a file of the same format."""
    file = Path(path)
    if not file.exists():
        if not allow_create:
            raise FileNotFoundError(f"{what} {path} is missing (create it with `{made_by}`)")
        write_secret(file, secrets.token_bytes(32).hex() + "\n", exclusive=True)
    seed = bytes.fromhex(read_secret(file, what).strip())  # refused if wider than 0600
    if len(seed) < 32:
        raise ValueError(f"{what} {path} must hold at least 32 bytes of hex")
    return int(p256.private_key_from_bytes(seed))


def public_key(private_key: int) -> bytes:
    return bytes(p256.public_key(private_key))
