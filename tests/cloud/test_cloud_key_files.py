"""The cloud's key files (checkpoint signing key, blob encryption key, chain key) are refused when others may
read them, as the gateway's is (carbontrace_host.secret_files.read_secret)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from carbontrace_host.secret_files import SecretTooOpen
from cloud.chain_signer import LocalKeySigner, load_key_file, write_key_file
from cloud.signing_key import load_or_create


@pytest.mark.parametrize("what", ["cloud signing key", "cloud encryption key"])
def test_a_p256_key_file_others_may_read_is_refused(tmp_path: Path, what: str) -> None:
    path = tmp_path / "keys" / "k.hex"
    made = load_or_create(str(path), allow_create=True, what=what)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(SecretTooOpen, match=f"{what} .*mode 0644"):
        load_or_create(str(path), allow_create=True, what=what)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # refused, not narrowed
    path.chmod(0o600)
    assert load_or_create(str(path), allow_create=False, what=what) == made


def test_a_chain_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "chain-key.hex", LocalKeySigner.generate())
    address = load_key_file(path).address
    path.chmod(0o640)
    with pytest.raises(SecretTooOpen, match=r"chain key file .*mode 0640"):
        load_key_file(path)
    path.chmod(0o600)
    assert load_key_file(path).address == address
