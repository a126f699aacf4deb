"""Turning a window's accepted readings into a signed batch, with carbontrace_protocol.batch. Pure.

The spool hands over the open readings of one window and the devices' energy baselines; this module
builds the aggregates and the signed batch and says where each baseline moves to. The spool writes all
of it in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from carbontrace_protocol.batch import (
    AGGREGATE_ATTRIBUTED_VERSION,
    Baseline,
    Batch,
    aggregate_window,
    as_baseline,
    build_batch,
    flux_count,
    measurement_time,
    parse_leaf,
    sign_batch,
)
from carbontrace_protocol.emission_factors import EmissionFactor, get_factor
from carbontrace_protocol.reading import Reading
from edge_gateway.spool import OpenReading
from edge_gateway.spool import decode_signed_reading as decode_signed


def next_baselines(
    readings: Sequence[Reading], baselines: dict[str, Baseline], times: dict[str, dict[int, int]] | None = None
) -> dict[str, Baseline]:
    """Per device, (seq, Wh, measurement time) of the highest-sequence reading with energy seen so far, if it
    moved. ``times``: per device, the re-derived time of each unsynced reading by sequence number."""
    moved: dict[str, Baseline] = {}
    for reading in readings:
        if reading.energy_wh is None:
            continue
        current = moved.get(reading.device_id, baselines.get(reading.device_id))
        if current is None or reading.seq > current[0]:
            at = measurement_time(reading, (times or {}).get(reading.device_id, {}))
            moved[reading.device_id] = (reading.seq, reading.energy_wh, at)
    return moved


def make_batch(
    gateway_key: int,
    gateway_id: str,
    site_id: str,
    window: tuple[int, int],
    interval_s: int,
    factor: EmissionFactor,
    open_readings: Sequence[OpenReading],
    baselines: dict[str, Baseline],
    batch_seq: int,
    prev_hash: bytes,
    created: int,
    signed_fluxes: Sequence[bytes] = (),
) -> tuple[Batch, dict[str, Baseline]]:
    """The window's batch: its readings, one aggregate per device, then its chamber flux records (leaf type 3)."""
    ordered = sorted(open_readings, key=lambda r: (r.device_id, r.seq))
    decoded = [decode_signed(r.signed) for r in ordered]
    by_device: dict[str, list[Reading]] = {}
    times: dict[str, dict[int, int]] = {}
    for open_reading, reading in zip(ordered, decoded, strict=True):
        by_device.setdefault(reading.device_id, []).append(reading)
        if open_reading.retimed is not None:
            times.setdefault(reading.device_id, {})[reading.seq] = open_reading.retimed[0]
    aggregates = [
        aggregate_window(device, window[0], window[1], interval_s, by_device[device], factor, baselines.get(device),
                         times.get(device))
        for device in sorted(by_device)
    ]
    retimed = {index: r.retimed for index, r in enumerate(ordered) if r.retimed is not None}
    batch = build_batch(
        gateway_key, gateway_id, site_id, batch_seq, window, [r.signed for r in ordered], aggregates, prev_hash,
        created, retimed=retimed, signed_fluxes=signed_fluxes,
    )
    return batch, next_baselines(decoded, baselines, times)


def renumber(gateway_key: int, batch: Batch, batch_seq: int, prev_hash: bytes) -> Batch:
    """The same leaves (and field salts) under a new number and predecessor, re-signed (a resync after 409
    out_of_order)."""
    header = batch.header
    return sign_batch(
        gateway_key,
        header["gateway"],
        header["site"],
        batch_seq,
        (header["window"][0], header["window"][1]),
        batch.leaves,
        header["readings"],
        batch.openings,
        prev_hash,
        header["created"],
        retimed=batch.retimed,
        flux_leaves=flux_count(header),
    )


def rebase_after_skip(
    gateway_key: int, skipped: Batch, later: Sequence[Batch]
) -> tuple[list[Batch], dict[str, Baseline | None]]:
    """The batches after a skipped (dead-lettered) one, moved onto its number and predecessor, re-signed, with
    every energy aggregate of a device in the skipped batch recomputed on the baseline the cloud has: the one
    the skipped batch started from (its aggregates say which). Also those devices' baselines after them
    (None: none). Without this the next batch counts energy from readings the cloud never received, and the
    cloud refuses it (aggregate_mismatch)."""
    baselines: dict[str, Baseline | None] = {}
    for _, aggregate in skipped.aggregates():
        energy = aggregate.get("energy")
        if isinstance(energy, dict):
            baselines[aggregate["device"]] = as_baseline(energy.get("baseline"))
    seq, prev = int(skipped.header["batch_seq"]), bytes(skipped.header["prev"])
    rebuilt: list[Batch] = []
    for batch in later:
        count = batch.header["readings"]
        signed = [parse_leaf(leaf)[1] for leaf in batch.leaves[:count]]
        decoded = [decode_signed(s) for s in signed]
        times: dict[str, dict[int, int]] = {}
        for index, (at, _) in batch.retimed.items():
            times.setdefault(decoded[index].device_id, {})[decoded[index].seq] = at
        aggregates = []
        for _, aggregate in batch.aggregates():
            device = aggregate["device"]
            if device in baselines and isinstance(aggregate.get("energy"), dict):
                mine = [r for r in decoded if r.device_id == device]
                window = aggregate["window"]
                factor = get_factor(aggregate["factor"]["id"])
                aggregate = aggregate_window(device, window[0], window[1], aggregate["interval_s"], mine, factor,
                                             baselines[device], times.get(device),
                                             attributed=aggregate["v"] == AGGREGATE_ATTRIBUTED_VERSION)
            aggregates.append(aggregate)
        for device, base in list(baselines.items()):
            moved = next_baselines([r for r in decoded if r.device_id == device], {device: base} if base else {},
                                   times)
            if device in moved:
                baselines[device] = moved[device]
        header = batch.header
        new = build_batch(gateway_key, header["gateway"], header["site"], seq,
                          (header["window"][0], header["window"][1]), signed, aggregates, prev, header["created"],
                          retimed=batch.retimed, signed_fluxes=[body for _, body in batch.fluxes()])
        rebuilt.append(new)
        seq, prev = seq + 1, new.hash
    return rebuilt, baselines
