"""On-chain cost: gas per checkpoint anchor, per reading at 1k/10k/100k readings per checkpoint, next to the
seed paper's one-transaction-per-reading design (NaiveHashStore) on the same (embedded, deterministic) EVM."""

from __future__ import annotations

import hashlib
import statistics

from carbontrace.benchmarks.common import Row, SectionResult
from carbontrace_protocol.cid import cid_for
from cloud import chain as chainlib


def run(readings_per_checkpoint: list[int], readings_per_batch: int, naive_samples: int) -> SectionResult:
    chain = chainlib.connect_embedded()
    registry, registry_deploy = chainlib.deploy_registry(chain)
    naive, naive_deploy = chainlib.deploy_naive_store(chain)

    naive_gas = [naive.store_hash(hashlib.sha256(b"reading %d" % i).digest()).gas_used for i in range(naive_samples)]
    per_reading_naive = statistics.fmean(naive_gas)

    result = SectionResult()
    tree_size = 0
    anchors = []
    for readings in readings_per_checkpoint:
        # A checkpoint covers whole batches: the log grows by readings/batch leaves since the last one.
        tree_size += max(1, readings // readings_per_batch)
        root = hashlib.sha256(b"log root %d" % tree_size).digest()
        cid = cid_for(b"checkpoint blob %d" % tree_size)
        gas = registry.anchor_checkpoint(tree_size, root, cid).gas_used
        anchors.append({"readings": readings, "tree_size": tree_size, "gas": gas})
        result.rows.append(Row("gas", f"gas/reading @ {readings:,} readings/checkpoint", gas / readings, "gas",
                               per_reading_naive, "NaiveHashStore gas/reading"))
    anchor_gas = statistics.fmean(a["gas"] for a in anchors)
    result.rows.insert(0, Row("gas", "gas per checkpoint anchor", anchor_gas, "gas", per_reading_naive,
                              "NaiveHashStore gas per stored reading",
                              note="one tx per checkpoint, whatever it covers"))
    result.details = {
        "anchors": anchors,
        "naive_gas_per_reading": per_reading_naive,
        "naive_samples": naive_samples,
        "deploy_gas": {"CarbonTraceRegistry": registry_deploy.gas_used, "NaiveHashStore": naive_deploy.gas_used},
        "readings_per_batch": readings_per_batch,
    }
    return result
