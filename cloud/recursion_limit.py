"""Keep the interpreter's recursion limit sane after the chain libraries are imported.

py_ecc raises ``sys.setrecursionlimit`` to 100,000 at import (py-evm to 12,288); at 100,000 C code that
recurses per nesting level (the JSON parser, repr, pickle) overflows the thread's stack and the process dies
with SIGSEGV instead of raising RecursionError (issue 13). py-evm's own figure is what the EVM needs to reach
its call depth of 1024 frames, and the JSON parser still raises cleanly at it, so that is the cap.
"""

from __future__ import annotations

import sys

# py-evm's EVM_RECURSION_LIMIT (eth/__init__.py): 1024 EVM frames of ~12 Python frames each.
RECURSION_LIMIT = 1024 * 12


def cap_recursion_limit() -> int:
    """Import the libraries that raise the limit (so their import-time side effect is spent), then cap it."""
    import eth  # noqa: F401 - imported for its side effect on the recursion limit
    import py_ecc  # noqa: F401 - idem

    sys.setrecursionlimit(min(sys.getrecursionlimit(), RECURSION_LIMIT))
    return sys.getrecursionlimit()
