"""Content-addressed blob storage: a local directory store and a small IPFS (Kubo RPC API) client.

Every blob is named by `carbontrace_protocol.cid.cid_for(blob)`, the CIDv1 IPFS gives the same bytes with
raw leaves, so the local store and IPFS agree on every name and a blob can move between them unchanged.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from carbontrace_host.secret_files import private_dir
from carbontrace_protocol.cid import cid_for


class ContentStoreError(Exception):
    pass


class IpfsUnavailable(ContentStoreError):
    """The IPFS node did not answer: keep the blob locally and pin it later."""


class CidMismatch(ContentStoreError):
    pass


class BlobTooLarge(ContentStoreError):
    """IPFS would serve more bytes for a cid than any blob the cloud writes."""


# Larger than any blob the cloud writes: a batch (max_batch_bytes, 8 MiB by default, sealed) or a checkpoint blob
# (about 70 bytes per batch it lists).
MAX_BLOB_BYTES = 64 * 1024 * 1024


def _bounded(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The chunks up to ``limit`` bytes in all (the last one cut), then stop reading."""
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


class LocalContentStore:
    """Blobs as files named by their CID, written atomically (temp file + rename)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        private_dir(self.directory)  # the blobs are sealed, and still nobody else's business: 0700

    def _path(self, cid: str) -> Path:
        if not cid.isalnum():
            raise ValueError("not a CID")
        return self.directory / cid[-2:] / cid

    def put(self, blob: bytes) -> str:
        cid = cid_for(blob)
        path = self._path(cid)
        if path.exists():
            return cid
        private_dir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cid

    def get(self, cid: str) -> bytes:
        try:
            data = self._path(cid).read_bytes()
        except FileNotFoundError as err:
            raise KeyError(cid) from err
        except OSError as err:  # a directory where the blob should be, unreadable: the blob is not to be had
            raise ContentStoreError(f"stored blob {cid} cannot be read: {err.strerror or err}") from err
        if cid_for(data) != cid:
            raise CidMismatch(f"stored blob {cid} is corrupt")
        return data

    def has(self, cid: str) -> bool:
        return self._path(cid).exists()


class IpfsClient:
    """The three Kubo RPC calls the cloud needs (js-ipfs and Kubo both speak them)."""

    def __init__(self, url: str, timeout_s: float = 10.0, max_blob_bytes: int = MAX_BLOB_BYTES) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_blob_bytes = max_blob_bytes

    def _post(self, path: str, params: dict[str, str], files: dict[str, bytes] | None = None) -> httpx.Response:
        try:
            response = httpx.post(
                f"{self.url}/api/v0/{path}",
                params=params,
                files={"file": ("blob", files["file"])} if files else None,
                timeout=self.timeout_s,
            )
        except httpx.TransportError as err:
            raise IpfsUnavailable(f"IPFS node at {self.url} unreachable: {err}") from err
        if response.status_code != 200:
            raise ContentStoreError(f"IPFS {path} failed: HTTP {response.status_code} {response.text[:200]}")
        return response

    def add(self, blob: bytes) -> str:
        """Add and pin; returns the node's CID, which must be ours."""
        params = {"cid-version": "1", "raw-leaves": "true", "cid-base": "base32", "pin": "true"}
        answer = self._post("add", params, {"file": blob}).json()
        return str(answer["Hash"])

    def cat(self, cid: str) -> bytes:
        """The blob ``cid`` names, read as a stream and refused past ``max_blob_bytes``: a cid comes from the chain
        or a checkpoint blob, and anyone can put bytes of any size on IPFS, so its size is not ours to trust
        (a node serving gigabytes must not fill the cloud's memory)."""
        limit = self.max_blob_bytes
        try:
            with httpx.stream("POST", f"{self.url}/api/v0/cat", params={"arg": cid}, timeout=self.timeout_s) as answer:
                if answer.status_code != 200:
                    head = b"".join(_bounded(answer.iter_bytes(), 200))
                    raise ContentStoreError(
                        f"IPFS cat failed: HTTP {answer.status_code} {head.decode(errors='replace')}")
                declared = answer.headers.get("x-content-length", answer.headers.get("content-length", ""))
                if declared.strip().isdigit() and int(declared) > limit:
                    raise BlobTooLarge(f"IPFS blob {cid} is {int(declared)} bytes, over the limit of {limit}")
                data = b"".join(_bounded(answer.iter_bytes(), limit + 1))
        except httpx.TransportError as err:
            raise IpfsUnavailable(f"IPFS node at {self.url} unreachable: {err}") from err
        except httpx.HTTPError as err:  # a malformed answer (decoding, protocol): not the blob
            raise ContentStoreError(f"IPFS cat of {cid} failed: {type(err).__name__}: {err}") from err
        if len(data) > limit:
            raise BlobTooLarge(f"IPFS blob {cid} exceeds the limit of {limit} bytes")
        return data

    def pin(self, cid: str) -> None:
        self._post("pin/add", {"arg": cid})

    def version(self) -> str:
        return str(self._post("version", {}).json().get("Version", ""))


class ContentStore:
    """Local store always; IPFS too when configured. `put` never fails because IPFS is down."""

    def __init__(
        self,
        local: LocalContentStore,
        ipfs: IpfsClient | None = None,
        on_error: Callable[[str, BaseException], None] = lambda _operation, _err: None,
    ) -> None:
        self.local = local
        self.ipfs = ipfs
        self.on_error = on_error  # (operation, error) of every IPFS call that failed: counted by cloud/metrics.py

    def put(self, blob: bytes) -> tuple[str, bool]:
        """Store ``blob``; returns (cid, pinned). pinned is False when IPFS is configured but unreachable."""
        cid = self.local.put(blob)
        if self.ipfs is None:
            return cid, True
        return cid, self.pin(cid, blob)

    def pin(self, cid: str, blob: bytes | None = None) -> bool:
        """Add a locally held blob to IPFS; False if IPFS is down (retry later)."""
        if self.ipfs is None:
            return True
        data = blob if blob is not None else self.local.get(cid)
        try:
            remote = self.ipfs.add(data)
        except ContentStoreError as err:
            self.on_error("pin", err)
            if isinstance(err, IpfsUnavailable):
                return False
            raise
        if remote != cid:
            raise CidMismatch(f"IPFS named the blob {remote}, we computed {cid}")
        return True

    def get(self, cid: str) -> bytes:
        try:
            return self.local.get(cid)
        except KeyError:
            if self.ipfs is None:
                raise
        try:
            data = self.ipfs.cat(cid)
        except ContentStoreError as err:
            self.on_error("get", err)
            raise
        if cid_for(data) != cid:
            raise CidMismatch(f"IPFS returned bytes that are not {cid}")
        return data
