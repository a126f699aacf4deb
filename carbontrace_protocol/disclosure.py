"""Selective disclosure of aggregate fields: a salted commitment per field under the aggregate leaf.

A committed aggregate leaf body (leaf type 2, aggregate format 2) is

    {"v": 2, "device": <device id>, "window": [start, end], "fields": {<name>: <32-byte commitment>, ...}}

The device and window are in clear: they place the leaf (which device, which time), as the SQL index and a
trace query need. Every measured or derived field of the aggregate (``batch.aggregate_window``) is committed
on its own:

    commitment = SHA-256(CBOR ["carbontrace/aggregate-field/v1", name, salt, value])

with a fresh random 16-byte salt per field. The *opening* of a field is CBOR ``[salt, value]``; whoever holds
it recomputes the commitment and compares. The batch blob (sealed, cloud/blob_readers) carries every
opening; a proof bundle carries only the openings its query's types disclose (``views.disclosed_fields``),
so the public checks emissions against the chain while CO2, temperature and humidity stay closed. The salt
is what keeps a closed field closed: CO2 ppm has a few thousand plausible values, so an unsalted hash of
one would be read by trying them all.

Format 1 aggregates (the whole map in clear) are still read for batches stored before format 2; the cloud
accepts no new ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from carbontrace_protocol import cbor
from carbontrace_protocol.errors import MalformedCBOR, ProtocolError

COMMITTED_AGGREGATE_VERSION = 2
# Leaf format 3: the same commitments over an aggregate of content version 3, whose energy carries its
# measurement-time runs (carbontrace_protocol/attribution.py); format 2 leaves are still read.
COMMITTED_ATTRIBUTED_VERSION = 3
COMMITTED_VERSIONS = (COMMITTED_AGGREGATE_VERSION, COMMITTED_ATTRIBUTED_VERSION)
SALT_SIZE = 16
COMMITMENT_SIZE = 32
FIELD_DOMAIN = "carbontrace/aggregate-field/v1"
# In clear in a committed leaf; every other field of an aggregate is committed.
CLEAR_FIELDS = ("device", "window")
# The aggregate content version (batch.BATCH_FORMAT_VERSION) is implied by the leaf's, so it is not a field.
CONTENT_VERSION_FIELD = "v"
BODY_FIELDS = frozenset({"v", "device", "window", "fields"})


class BadOpening(ProtocolError):
    """An opening that is not canonical ``[salt, value]`` or does not match its commitment."""

    reason = "bad_opening"


class MalformedCommittedAggregate(ProtocolError):
    reason = "malformed_batch"


def commitment(name: str, salt: bytes, value: Any) -> bytes:
    return hashlib.sha256(cbor.encode([FIELD_DOMAIN, name, bytes(salt), value])).digest()


def is_committed(body: Mapping[Any, Any]) -> bool:
    """Whether an aggregate leaf body is format 2 or 3 (committed) rather than format 1 (in clear)."""
    # "fields" too: an aggregate in clear of content version 3 has the same "v" as a format-3 leaf
    return body.get("v") in COMMITTED_VERSIONS and "fields" in body


def commit(
    aggregate: Mapping[str, Any], random_bytes: Callable[[int], bytes] = os.urandom
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(committed leaf body, openings by field name) of an aggregate as ``batch.aggregate_window`` makes it."""
    fields: dict[str, bytes] = {}
    openings: dict[str, bytes] = {}
    for name, value in aggregate.items():
        if name in CLEAR_FIELDS or name == CONTENT_VERSION_FIELD:
            continue
        salt = random_bytes(SALT_SIZE)
        fields[name] = commitment(name, salt, value)
        openings[name] = cbor.encode([salt, value])
    attributed = aggregate.get(CONTENT_VERSION_FIELD) == COMMITTED_ATTRIBUTED_VERSION
    body = {
        "v": COMMITTED_ATTRIBUTED_VERSION if attributed else COMMITTED_AGGREGATE_VERSION,
        "device": aggregate["device"],
        "window": list(aggregate["window"]),
        "fields": fields,
    }
    return body, openings


def check_body(body: Mapping[Any, Any]) -> dict[str, bytes]:
    """The commitments of a committed leaf body, its shape checked exactly; ``MalformedCommittedAggregate``."""
    if set(body) != BODY_FIELDS or body["v"] not in COMMITTED_VERSIONS:
        raise MalformedCommittedAggregate(f"a committed aggregate has exactly the fields {sorted(BODY_FIELDS)}")
    if not isinstance(body["device"], str):
        raise MalformedCommittedAggregate("committed aggregate device must be text")
    window = body["window"]
    if (
        not isinstance(window, list)
        or len(window) != 2
        or not all(isinstance(t, int) and not isinstance(t, bool) for t in window)
    ):
        raise MalformedCommittedAggregate("committed aggregate window must be two integers")
    fields = body["fields"]
    if not isinstance(fields, dict) or not fields:
        raise MalformedCommittedAggregate("committed aggregate fields must be a non-empty map")
    for name, value in fields.items():
        if not isinstance(name, str) or name in BODY_FIELDS or name in CLEAR_FIELDS:
            raise MalformedCommittedAggregate(f"committed field name {name!r} is not allowed")
        if not isinstance(value, bytes) or len(value) != COMMITMENT_SIZE:
            raise MalformedCommittedAggregate(f"commitment of {name!r} must be {COMMITMENT_SIZE} bytes")
    return dict(fields)


def open_field(name: str, opening: bytes, expected: bytes) -> Any:
    """The value an opening discloses, after checking it is canonical [salt, value] and matches ``expected``."""
    try:
        decoded = cbor.decode(opening)
    except MalformedCBOR as err:
        raise BadOpening(f"opening of {name!r} is not CBOR: {err}") from err
    if not isinstance(decoded, list) or len(decoded) != 2 or not isinstance(decoded[0], bytes):
        raise BadOpening(f"opening of {name!r} must be [salt, value]")
    salt, value = decoded
    if len(salt) != SALT_SIZE:
        raise BadOpening(f"opening of {name!r} has a {len(salt)}-byte salt, not {SALT_SIZE}")
    try:
        canonical = cbor.encode(decoded)
    except (TypeError, ValueError) as err:  # a float, say: never in an aggregate
        raise BadOpening(f"opening of {name!r} holds a value the format does not allow: {err}") from err
    if canonical != bytes(opening):
        raise BadOpening(f"opening of {name!r} is not canonical CBOR")
    if commitment(name, salt, value) != expected:
        raise BadOpening(f"opening of {name!r} does not match its commitment")
    return value


def open_fields(body: Mapping[Any, Any], openings: Mapping[str, bytes], complete: bool = False) -> dict[str, Any]:
    """The aggregate a committed body and its openings disclose: the clear fields plus each opened one.

    Every opening must name a committed field and match it; ``complete`` also requires every committed field
    to be opened (the batch blob's openings, which the cloud compares with the aggregate it recomputes)."""
    fields = check_body(body)
    unknown = set(openings) - set(fields)
    if unknown:
        raise BadOpening(f"openings of fields the leaf does not commit to: {sorted(unknown)}")
    if complete and set(openings) != set(fields):
        raise BadOpening(f"fields committed but not opened: {sorted(set(fields) - set(openings))}")
    disclosed: dict[str, Any] = {"device": body["device"], "window": list(body["window"])}
    for name in sorted(openings):
        disclosed[name] = open_field(name, openings[name], fields[name])
    return disclosed
