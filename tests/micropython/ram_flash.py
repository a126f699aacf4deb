"""A RAM-backed stand-in for the board's flash filesystem, for the emulated Pico (MicroPython source).

rp2040js does not emulate flash erase/program, so the device code cannot write files on the emulated board's
own littlefs. ``RAM_FLASH`` defines a block device in a bytearray, formats it with littlefs2 (``os.VfsLfs2``,
the filesystem the Pico and the ESP32 use) and mounts it at ``RAM_FLASH_ROOT``. The device code is unchanged:
its ``FlashDir`` (flashfs.py) opens, writes, renames and flushes real files there, so the outbox, the
sequence store and the key file go through littlefs as on a board; only the block device under it is RAM,
and its read/write methods run in Python (on a board they are C), so their small allocations count in the
heap figures measured there.
"""

RAM_FLASH_ROOT = "/data"
RAM_FLASH_BLOCK_SIZE = 512
RAM_FLASH_BLOCKS = 24  # 12 KiB: the cycle's outbox (4 slots), sequence and key files and littlefs's metadata

RAM_FLASH = f'''
import os


class RAMBlockDev:
    """littlefs's extended block interface (readblocks/writeblocks with an offset, ioctl) over a bytearray."""

    def __init__(self, block_size, blocks):
        self.block_size = block_size
        self.blocks = blocks
        self.data = bytearray(block_size * blocks)
        self.view = memoryview(self.data)

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        buf[:] = self.view[start:start + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        start = block * self.block_size + (offset or 0)  # None: the simple interface (whole blocks)
        self.view[start:start + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase: RAM needs none
            return 0
        return None


ram_flash_device = RAMBlockDev({RAM_FLASH_BLOCK_SIZE}, {RAM_FLASH_BLOCKS})
os.VfsLfs2.mkfs(ram_flash_device)
os.mount(os.VfsLfs2(ram_flash_device), {RAM_FLASH_ROOT!r})
'''
