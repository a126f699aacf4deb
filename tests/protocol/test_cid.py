"""cid_for names blobs as `ipfs add --cid-version=1 --raw-leaves` does: the kubo/rust-cid vectors, and for
blobs over 256 KiB the UnixFS importer of js-ipfs run from node (an implementation nobody here wrote)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from carbontrace_protocol.cid import CHUNK_SIZE, MAX_LINKS, cid_for
from tests.conftest import REPO_ROOT


def test_every_cid_vector(vectors: Path) -> None:
    data = json.loads((vectors / "ipfs" / "cid_vectors.json").read_text())
    assert len(data["vectors"]) >= 8
    for vector in data["vectors"]:
        assert cid_for(bytes.fromhex(vector["input_hex"])) == vector["cid"], vector["source"]


def _node_cids(paths: list[Path]) -> list[str]:
    out = subprocess.run(
        ["node", str(REPO_ROOT / "tools" / "unixfs_cid.mjs"), *map(str, paths)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return out.stdout.split()


@pytest.mark.slow
def test_large_blobs_match_the_js_ipfs_importer(tmp_path: Path) -> None:
    # Sizes around every boundary: one chunk, one chunk + 1, a full first level, and a second level.
    sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17,
             MAX_LINKS * CHUNK_SIZE, MAX_LINKS * CHUNK_SIZE + 1]
    paths = []
    for size in sizes:
        path = tmp_path / f"blob-{size}"
        # Deterministic, incompressible-enough content: a counter pattern differing per size.
        block = bytes((i * 131 + size) & 0xFF for i in range(4096))
        path.write_bytes((block * (size // 4096 + 1))[:size])
        paths.append(path)
    expected = _node_cids(paths)
    assert len(expected) == len(sizes)
    for path, want in zip(paths, expected, strict=True):
        assert cid_for(path.read_bytes()) == want, f"{path.name}"
    assert expected[-1].startswith("bafybei"), "a multi-level blob must be a dag-pb root"
