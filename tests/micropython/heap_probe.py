"""Heap measurements on a device runtime with a real GC (unix port, emulated Pico): MicroPython source.

The ballast method (as ../shared/emulators/rp2040/bench_device.py measures): fill the free heap with
bytearrays until only ``headroom`` bytes are left, then run the work; the GC collects inside it as on a
board, so the work completes only if its live peak (plus fragmentation) fits in ``headroom``.
``HEAP_PROBE`` defines:

- ``completes_within(fn, headroom)`` -> (ok, free bytes left before fn ran)
- ``headroom_needed(fn, high, step)``: the smallest headroom, to ``step`` bytes, with which ``fn`` completes
- ``alloc_of(fn)``: bytes ``fn`` allocates with the GC off (or, as a negative number, minus the free heap it
  exhausted: it allocates more than that)
"""

HEAP_PROBE = '''
import gc


def _fill_heap_to(headroom):
    ballast = []
    chunk = 1 << 20
    while chunk >= 16:  # down to one GC block on a 32-bit board: small free holes get ballast too
        want = gc.mem_free() - headroom
        if want < 16:
            break
        try:
            ballast.append(bytearray(min(chunk, want)))
        except MemoryError:
            chunk //= 2
    return ballast


def completes_within(fn, headroom):
    gc.collect()
    ballast = _fill_heap_to(headroom)
    left = gc.mem_free()
    try:
        fn()
        ok = True
    except MemoryError:
        ok = False
    ballast = None
    gc.collect()
    return ok, left


def headroom_needed(fn, high, step):
    low = 0
    while high - low > step:
        mid = (low + high) // 2
        if completes_within(fn, mid)[0]:
            high = mid
        else:
            low = mid
    return high


def alloc_of(fn):
    gc.collect()
    free = gc.mem_free()
    before = gc.mem_alloc()
    gc.disable()
    try:
        fn()
        result = gc.mem_alloc() - before
    except MemoryError:
        result = -free
    gc.enable()
    gc.collect()
    return result
'''
