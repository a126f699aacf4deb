"""Disclosure: what committing each aggregate field costs, and what the openings add to a proof bundle.

Measured on a real aggregate (``aggregate_window`` over signed readings with every measurement), beside the
aggregate in clear (format 1) in the same run: the gateway commits once per aggregate, the cloud checks every
opening at ingestion, a verifier checks the opened ones per bundle item.
"""

from __future__ import annotations

import json

from carbontrace.benchmarks.common import DeviceKey, Row, best_rate
from carbontrace_protocol import cbor, disclosure, views
from carbontrace_protocol.batch import aggregate_leaf, aggregate_window
from carbontrace_protocol.cose import parse_sign1
from carbontrace_protocol.emission_factors import get_factor
from carbontrace_protocol.reading import decode_payload
from carbontrace_protocol.views import DataType

PUBLIC_TYPES = frozenset({DataType.EMISSIONS})


def rows(readings: int, count: int) -> tuple[list[Row], dict[str, int]]:
    device = DeviceKey("bench-disclose-1")
    signed = [device.signed(seq, 1_700_000_000 + 5 * seq) for seq in range(readings)]
    decoded = [decode_payload(parse_sign1(m).payload) for m in signed]
    window = (1_700_000_000, 1_700_000_000 + 5 * readings)
    aggregate = aggregate_window(device.device_id, window[0], window[1], 5, decoded, get_factor())
    body, openings = disclosure.commit(aggregate)
    committed, clear = aggregate_leaf(body), aggregate_leaf(aggregate)
    public = {name: openings[name] for name in views.fields_to_open(committed, PUBLIC_TYPES)}

    def commit() -> None:
        for _ in range(count):
            aggregate_leaf(disclosure.commit(aggregate)[0])

    def encode_clear() -> None:
        for _ in range(count):
            aggregate_leaf(aggregate)

    def open_all() -> None:
        for _ in range(count):
            disclosure.open_fields(body, openings, complete=True)

    def check_public() -> None:
        for _ in range(count):
            views.leaf_content(committed, public)

    def decode_clear() -> None:
        for _ in range(count):
            views.leaf_content(clear)

    commit_rate, clear_rate = best_rate(commit, count), best_rate(encode_clear, count)
    open_rate, public_rate, decode_rate = best_rate(open_all, count), best_rate(check_public, count), best_rate(
        decode_clear, count
    )
    openings_bytes = len(cbor.encode(openings))
    public_json = len(json.dumps({k: v.hex() for k, v in public.items()}))
    result = [
        Row("seal", "commit one aggregate (every field salted)", 1e6 / commit_rate, "µs/aggregate",
            1e6 / clear_rate, "the aggregate leaf in clear (format 1)"),
        Row("seal", "check every opening (cloud ingestion)", 1e6 / open_rate, "µs/aggregate",
            1e6 / decode_rate, "decoding the leaf in clear"),
        Row("seal", "check a public item's openings (verifier)", 1e6 / public_rate, "µs/item",
            1e6 / decode_rate, "decoding the leaf in clear"),
        Row("seal", "committed aggregate leaf", float(len(committed)), "bytes", float(len(clear)),
            "the leaf in clear"),
        Row("seal", "openings in the blob", float(openings_bytes), "bytes/aggregate",
            note=f"{len(openings)} fields"),
        Row("seal", "openings in a public bundle item", float(public_json), "bytes/item",
            note=f"{len(public)} fields opened, {len(openings) - len(public)} closed"),
    ]
    details = {"committed_leaf_bytes": len(committed), "clear_leaf_bytes": len(clear),
               "openings_bytes": openings_bytes, "public_openings_json_bytes": public_json}
    return result, details
