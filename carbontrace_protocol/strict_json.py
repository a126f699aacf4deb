"""Strict JSON for evidence: one meaning per document, or a typed error.

Proof bundles, statements and trust files are parsed with this, never with a bare ``json.loads``:
- a duplicate key in any object is an error (two readers could otherwise pick different values);
- NaN, Infinity and -Infinity are errors (not JSON);
- a ``\\u`` escape of a lone UTF-16 surrogate is an error: it decodes to no Unicode character, so the string
  cannot be written as UTF-8 (a database, a file, a hash of its text) and each reader would do something else;
- nesting deeper than ``max_depth`` is an error, found by a byte scan *before* the parser runs, because
  importing web3/py_ecc raises the recursion limit far enough for the C parser to overflow the stack;
- input larger than ``max_bytes`` is an error before anything is decoded.
Exact types (an integer is not a float, 0 is not false) are enforced by the typed parsers that read the
result (carbontrace_protocol.proof_bundle): ``json`` keeps 1 and 1.0 and false apart, and so do they.
"""

from __future__ import annotations

import json
import re
from typing import Any

from carbontrace_protocol.errors import ProtocolError

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class StrictJSONError(ProtocolError):
    reason = "malformed_json"


class AmbiguousJSON(StrictJSONError):
    """Text a plain JSON parser reads, but not to one meaning: a duplicate key, NaN or an infinity, a lone
    surrogate. (Text no JSON parser reads is the plain StrictJSONError.)"""


# a \u escape of a UTF-16 surrogate (D800-DFFF), paired or not: only then can a parsed string hold a lone one
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def nesting_depth(text: bytes) -> int:
    """The deepest nesting of [ and { outside strings (a byte scan; no parser, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def exceeds_depth(text: bytes, max_depth: int) -> bool:
    """Whether ``text`` nests deeper than ``max_depth``; the rule every JSON reader of the project applies (the
    strict loads below, the cloud's request limits). Counting brackets is C-fast and bounds the depth from above,
    so the byte-by-byte scan only runs on bodies that have more than ``max_depth`` of them."""
    if text.count(b"[") + text.count(b"{") <= max_depth:
        return False
    return nesting_depth(text) > max_depth


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise AmbiguousJSON(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise AmbiguousJSON(f"{name} is not JSON")


def _lone_surrogate(value: Any) -> bool:
    """Whether any string of the parsed ``value`` (keys too) holds a lone surrogate (it has no UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(data: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    try:
        raw = data.encode() if isinstance(data, str) else bytes(data)
    except UnicodeEncodeError as err:  # a str holding a lone surrogate character itself
        raise AmbiguousJSON(f"a lone UTF-16 surrogate is not a character: {err}") from err
    if len(raw) > max_bytes:
        raise StrictJSONError(f"document of {len(raw)} bytes exceeds the limit of {max_bytes}")
    if exceeds_depth(raw, max_depth):
        raise StrictJSONError(f"nesting deeper than {max_depth}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StrictJSONError(f"not UTF-8: {err}") from err
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except StrictJSONError:
        raise
    except ValueError as err:
        raise StrictJSONError(f"not JSON: {err}") from err
    # the walk only for text that escapes a surrogate (a pair is one character after parsing, and fine)
    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(value):
        raise AmbiguousJSON("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff unpaired): not a character")
    return value


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, separators ``,`` and ``:``, ASCII; what detached signatures cover."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def exact_object(value: Any, what: str, names: tuple[str, ...], error: type[Exception]) -> dict[str, Any]:
    """``value`` if it is an object with exactly the fields ``names``; else ``error`` naming what is missing and
    what is unknown (the typed parsers' "every field is checked or it is not carried")."""
    if not isinstance(value, dict):
        raise error(f"{what} must be an object")
    missing, unknown = set(names) - set(value), set(value) - set(names)
    if missing or unknown:
        raise error(f"{what}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
    return value
