"""Heap measurements on a device runtime with a real GC (unix port, emulated Pico): MicroPython source.

The one probe the tests (reading_cycle.py), the firmware bench (carbontrace/benchmarks/firmware_runtimes.py)
and tools/pico_heap_headroom.py share. The work runs on a heap whose free space is limited to ``headroom``
bytes; the GC collects inside it as on a board, so it completes only if its live peak (plus the
fragmentation it causes itself) fits. Two ways to leave that free space:

- ``one_area=True`` (the default, and the figure the budgets state): a reserve of ``headroom`` bytes is
  allocated first, every other free byte is filled with ballast, the reserve is dropped. The work gets one
  free area of that size, as a device has after boot (the heap's tail) and no hole besides.
- ``one_area=False`` (holes only): the ballast goes first, down to ``headroom`` free bytes; what is left is
  whatever the ballast's first-fit placement did not take, typically the loaded heap's small holes.

The ballast is a chain of pairs ``(bytearray, rest)``: every link is one small block, so the fill never
needs one big free area to grow (a list grown by ``append`` does, and stops early once only holes are
left, leaving them free on top of the headroom asked for). It halves its chunk on ``MemoryError`` down to
one GC block (16 bytes on a 32-bit board), so it takes every hole.

``HEAP_PROBE`` defines:

- ``completes_within(fn, headroom, one_area=True)`` -> (ok, free bytes when ``fn`` started); ok is None
  when the heap has no free area of ``headroom`` bytes to give
- ``headroom_needed(fn, high, step, one_area=True)``: the smallest headroom, to ``step`` bytes, with which
  ``fn`` completes, or None if it does not complete within ``high`` or within the heap's largest free area,
  whichever is smaller. What a work keeps for good (the outbox's and the stores' state) lands in the one area
  it ran in, so that largest area shrinks a little with every probe of a cycle.
- ``alloc_of(fn)``: bytes ``fn`` allocates with the GC off (or, as a negative number, minus the free heap it
  exhausted: it allocates more than that)
"""

HEAP_PROBE = '''
import gc


def fill_heap_to(headroom):
    ballast = None
    chunk = 1 << 20
    while chunk >= 16:
        want = gc.mem_free() - headroom
        if want < 16:
            break
        try:
            ballast = (bytearray(min(chunk, want)), ballast)
        except MemoryError:
            chunk //= 2
    return ballast


def _fill_around(headroom, one_area):
    # The reserve lives only in this frame: once it has returned no stale slot of a live frame (the GC scans
    # the C stack conservatively) can keep the reserve from being collected.
    reserve = bytearray(headroom) if one_area else None
    return fill_heap_to(0 if one_area else headroom)


def completes_within(fn, headroom, one_area=True):
    gc.collect()
    try:
        ballast = _fill_around(headroom, one_area)
    except MemoryError:  # no free area that big on this heap: the question does not arise
        return None, gc.mem_free()
    gc.collect()
    left = gc.mem_free()
    try:
        fn()
        ok = True
    except MemoryError:
        ok = False
    ballast = None
    gc.collect()
    return ok, left


def headroom_needed(fn, high, step, one_area=True):
    ok = completes_within(fn, high, one_area)[0]
    while ok is None and high > step:  # no free area of ``high`` bytes: start below the largest there is
        high -= step
        ok = completes_within(fn, high, one_area)[0]
    if not ok:
        return None
    low = 0
    while high - low > step:
        mid = (low + high) // 2
        if completes_within(fn, mid, one_area)[0]:
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
