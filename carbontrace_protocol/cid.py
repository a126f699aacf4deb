"""Content ids: the CIDv1 that ``ipfs add --cid-version=1 --raw-leaves`` gives for the same bytes.

Up to 262,144 bytes the block is the data itself: CIDv1, raw codec (0x55), sha2-256. Larger data is a
UnixFS file as a dag-pb balanced tree: 262,144-byte raw leaves, at most 174 links per node, each level
grouped left to right until one root remains (the layout of Kubo's and js-ipfs's importers).
The local content store and IPFS therefore name every blob identically.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

from multiformats import CID, multihash

CHUNK_SIZE = 262_144
MAX_LINKS = 174
_UNIXFS_FILE = 2


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _field(number, 2) + _varint(len(value)) + value


def _varint_field(number: int, value: int) -> bytes:
    return _field(number, 0) + _varint(value)


class _Block:
    """A node of the UnixFS tree: its CID, the file bytes under it, and its cumulative DAG size."""

    __slots__ = ("cid", "dag_size", "file_size")

    def __init__(self, cid: CID, file_size: int, dag_size: int) -> None:
        self.cid = cid
        self.file_size = file_size
        self.dag_size = dag_size


def _raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


# CIDv1 prefix of a raw block named by sha2-256: version 1, codec raw (0x55), multihash sha2-256 (0x12), 32 bytes
_RAW_SHA256_PREFIX = b"\x01\x55\x12\x20"


def _raw_cid_text(data: bytes) -> str:
    """``str(_raw_cid(data))`` without the multiformats object (its argument checks cost ~1 ms a call): the
    multibase base32 text, "b" + lowercase RFC 4648 base32 without padding."""
    digest = _RAW_SHA256_PREFIX + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(digest).decode("ascii").lower().rstrip("=")


def _parent(children: list[_Block]) -> _Block:
    # UnixFS Data: Type=File, filesize, blocksizes (unpacked repeated uint64), no inline data.
    unixfs = _varint_field(1, _UNIXFS_FILE) + _varint_field(3, sum(c.file_size for c in children))
    unixfs += b"".join(_varint_field(4, c.file_size) for c in children)
    # dag-pb PBNode: Links (field 2) before Data (field 1); PBLink: Hash, Name (empty), Tsize.
    links = b"".join(
        _bytes_field(2, _bytes_field(1, bytes(c.cid)) + _bytes_field(2, b"") + _varint_field(3, c.dag_size))
        for c in children
    )
    node = links + _bytes_field(1, unixfs)
    cid = CID("base32", 1, "dag-pb", multihash.digest(node, "sha2-256"))
    return _Block(cid, sum(c.file_size for c in children), len(node) + sum(c.dag_size for c in children))


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK_SIZE):
        yield data[start : start + CHUNK_SIZE]


def cid_for(data: bytes) -> str:
    """CIDv1 (base32) of ``data`` as IPFS names it with raw leaves."""
    data = bytes(data)
    if len(data) <= CHUNK_SIZE:
        return _raw_cid_text(data)
    level = [_Block(_raw_cid(chunk), len(chunk), len(chunk)) for chunk in _chunks(data)]
    while len(level) > 1:
        level = [_parent(level[i : i + MAX_LINKS]) for i in range(0, len(level), MAX_LINKS)]
    return str(level[0].cid)


def raw_block_cid(data: bytes) -> str:
    """CIDv1 of one raw block (no chunking), for ``/api/v0/block/put``-style storage."""
    return str(_raw_cid(bytes(data)))


# multiformats fills its multibase/multicodec registries lazily on first use, and two threads doing that at
# once (two uploads in the cloud's thread pool) raise "encoding ... already exists": fill them here, at import.
str(_raw_cid(b""))
str(CID("base32", 1, "dag-pb", multihash.digest(b"", "sha2-256")))
