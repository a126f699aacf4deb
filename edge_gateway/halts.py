"""The states that stop a gateway, each with the command that resolves it: what `carbontrace gateway status` lists
under "halts". Pure: built from the spool's stats (the same records the running gateway acts on).

- upload_halted: the cloud refused a batch (422) — uploads stop, nothing is deleted (metric ct_gateway_upload_halted).
- gateway_revoked: the same halt, because the cloud revoked this gateway (its API key answers 401 gateway_revoked,
  or a batch came back 422 gateway_revoked / revoked_gateway_key).
- spool_over_limit: the spool holds more unacknowledged bytes than spool_max_bytes — new readings stay unacked on
  the broker (metric ct_gateway_ingest_paused{reason="spool_over_limit"}); it drains as uploads are acknowledged.
- spool_disk_full: its filesystem (or spool_max_page_count) is full — the same pause, reason "spool_disk_full".
"""

from __future__ import annotations

import json
from typing import Any

from carbontrace_protocol.errors import GATEWAY_REVOKED

REVOKED_REASONS = (GATEWAY_REVOKED, "revoked_gateway_key")

RESOLVE_UPLOAD_HALT = (
    "`carbontrace gateway uploads status` shows the refused batch and the cloud's reason; fix the cause in the "
    "cloud, then `carbontrace gateway uploads retry`, or `carbontrace gateway uploads skip --batch N` to move it "
    "to the dead letters (kept, never uploaded) and resume"
)
RESOLVE_REVOKED = (
    "this gateway is decommissioned and its key never works again: register a replacement under a new id "
    "(`carbontrace provision gateway …`, a new key and API key) and run it with a new spool_path; this spool "
    "keeps every unacknowledged batch (`carbontrace gateway uploads status`)"
)
RESOLVE_SPOOL_FULL = (
    "the spool drains as the cloud acknowledges batches: resolve any upload halt above or the cloud outage "
    "(uploads resume by themselves), or raise the limit on the running gateway with `carbontrace gateway spool "
    "set-limit --max-bytes N` (`spool status` shows held and limit bytes; write spool_max_bytes in the config "
    "to keep them alike); ingest resumes by itself"
)

RESOLVE_DISK_FULL = (
    "free space on the spool's filesystem (or raise spool_max_page_count) and restart the gateway; with "
    "prune_acked off, acknowledged batches keep their bytes: turn it on"
)


def halts(stats: dict[str, Any], over_limit: bool, max_bytes: int | None, out_of_space: bool = False
          ) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    record = stats.get("upload_halted")
    if record:
        halt = json.loads(record)
        revoked = halt.get("reason") in REVOKED_REASONS
        found.append({
            "state": "gateway_revoked" if revoked else "upload_halted",
            "reason": halt.get("reason"),
            "batch_id": halt.get("batch_id"),
            "detail": halt.get("detail"),
            "resolve": RESOLVE_REVOKED if revoked else RESOLVE_UPLOAD_HALT,
        })
    if over_limit:
        found.append({
            "state": "spool_over_limit",
            "held_bytes": stats.get("held_bytes"),
            "max_bytes": max_bytes,
            "resolve": RESOLVE_SPOOL_FULL,
        })
    if out_of_space:
        found.append({"state": "spool_disk_full", "file_bytes": stats.get("file_bytes"), "resolve": RESOLVE_DISK_FULL})
    return found
