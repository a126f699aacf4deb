"""A directory on flash: whole-file reads and crash-safe replacement. MicroPython-safe.

Both ports hand one of these to the stores (seqstore, keystore, outbox) so the same code runs on the
board (LittleFS under /data) and in CPython (a temp directory).

Atomic replace: write ``name.tmp``, flush, close, then rename it over ``name``. On LittleFS (the default
filesystem on ESP32 and Pico W) and on POSIX filesystems rename over an existing file is atomic, so a
reader sees either the old or the new bytes. FAT cannot rename over an existing file: there we remove
the old file first, and ``read`` falls back to ``name.tmp`` when ``name`` is missing, so the window in
which a crash leaves only the temp file still finds the new, complete contents.
"""

import os
import sys

TMP_SUFFIX = ".tmp"


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _sync_fs():
    # MicroPython has os.sync() on some ports (a no-op on LittleFS, which commits on close). On CPython
    # it would flush every disk of the machine; fsync of the file is enough there.
    if sys.implementation.name != "micropython":
        return
    sync = getattr(os, "sync", None)
    if sync is not None:
        try:
            sync()
        except OSError:
            pass


class FlashDir:
    """Files under one directory (created if missing)."""

    def __init__(self, root):
        self.root = root.rstrip("/") if len(root) > 1 else root
        if not _exists(self.root):
            self._makedirs(self.root)

    @staticmethod
    def _makedirs(path):
        current = "/" if path.startswith("/") else ""
        for part in path.split("/"):
            if not part:
                continue
            current = current + part if current in ("", "/") else current + "/" + part
            if not _exists(current):
                os.mkdir(current)

    def path(self, name):
        if self.root == "/":
            return "/" + name
        return self.root + "/" + name

    def exists(self, name):
        return _exists(self.path(name)) or _exists(self.path(name) + TMP_SUFFIX)

    def read(self, name):
        """The file's bytes, or None if it does not exist (see the FAT fallback above)."""
        for path in (self.path(name), self.path(name) + TMP_SUFFIX):
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError:
                continue
        return None

    def write_atomic(self, name, data):
        final = self.path(name)
        tmp = final + TMP_SUFFIX
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            fsync = getattr(os, "fsync", None)
            if fsync is not None and hasattr(f, "fileno"):
                fsync(f.fileno())
        self._rename(tmp, final)
        _sync_fs()

    @staticmethod
    def _rename(src, dst):
        try:
            os.rename(src, dst)
        except OSError:
            # FAT: rename does not replace. read() finds tmp until the rename completes.
            os.remove(dst)
            os.rename(src, dst)

    def replace(self, src_name, dst_name):
        """Rename ``src_name`` over ``dst_name`` (atomic on LittleFS and POSIX)."""
        self._rename(self.path(src_name), self.path(dst_name))
        _sync_fs()

    def open(self, name, mode):
        return open(self.path(name), mode)

    def remove(self, name):
        for path in (self.path(name), self.path(name) + TMP_SUFFIX):
            try:
                os.remove(path)
            except OSError:
                pass

    def size(self, name):
        try:
            return os.stat(self.path(name))[6]
        except OSError:
            return -1
