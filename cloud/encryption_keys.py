"""The cloud's blob encryption keys: the current one seals every new batch; retired ones still open what they sealed.

The current key is the file CT_CLOUD_ENCRYPTION_KEY_FILE (default cloud-encryption-key.hex beside the signing key).
`carbontrace cloud rotate-encryption-key` makes a new one and keeps the old private key beside it as
``<name>.retired-<fingerprint>`` (0600): a sealed blob's bytes, and so its CID, are fixed, so a blob sealed to an
old key can only ever be opened with that key. Batches sealed afterwards name the new key only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from carbontrace_host.secret_files import FILE_MODE
from carbontrace_protocol.ids import key_fingerprint
from cloud.blob_readers import BlobSealer
from cloud.signing_key import load_or_create

WHAT = "cloud encryption key"
MADE_BY = "carbontrace cloud bootstrap"
RETIRED_MARK = ".retired-"


def _fingerprint(private_key: int) -> str:
    return key_fingerprint(BlobSealer.from_int(private_key).public_key).hex()


def retired_key_files(path: str | Path) -> list[Path]:
    current = Path(path)
    return sorted(current.parent.glob(current.name + RETIRED_MARK + "*"))


def load_sealer(path: str | Path, allow_create: bool) -> BlobSealer:
    """The sealer with the current key (created only where allowed) and every retired one."""
    current = load_or_create(str(path), allow_create, WHAT, MADE_BY)
    retired = [load_or_create(str(f), False, "retired " + WHAT) for f in retired_key_files(path)]
    return BlobSealer.from_int(current, retired)


@dataclass(frozen=True)
class Rotation:
    retired_fingerprint: str
    active_fingerprint: str
    retired_file: Path


def rotate_encryption_key(path: str | Path) -> Rotation:
    """A new current key; the old one kept as a retired key file. Safe to run again after a failure: the new key
    waits in ``<name>.new`` until it is moved into place."""
    current = Path(path)
    if not current.exists():
        raise FileNotFoundError(f"{WHAT} {current} does not exist: nothing to rotate (`{MADE_BY}` makes one)")
    old = _fingerprint(load_or_create(str(current), False, WHAT))
    pending = current.with_name(current.name + ".new")
    new = _fingerprint(load_or_create(str(pending), True, "new " + WHAT))  # 0600; reused by a re-run
    retired = current.with_name(current.name + RETIRED_MARK + old)
    os.replace(current, retired)
    os.chmod(retired, FILE_MODE)
    os.replace(pending, current)
    return Rotation(old, new, retired)
