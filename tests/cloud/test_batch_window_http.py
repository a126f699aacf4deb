"""Issue 13, item 5: a batch whose header window is not [start, end) of integers is refused with a reason,
and the console's batch list keeps answering (a stored ["x", "y"] window made /console/batches a 500)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from carbontrace_protocol import cbor, cose
from carbontrace_protocol.batch import build_batch
from tests.cloud.cloud_testkit import ADMIN_KEY, auth, register_tenant, upload


@pytest.mark.parametrize("window", [["x", "y"], [5, 1], [1, 2, 3]], ids=["strings", "reversed", "three"])
def test_batch_with_a_bad_window_is_refused_and_the_console_lists(sqlite_client: TestClient, window: Any) -> None:
    tenant = register_tenant(sqlite_client, "Window", devices=1)
    gateway = tenant.gateway
    # An empty batch (no leaves, so no aggregate whose window the verifier would compare): only the header's
    # own parser can refuse its window.
    empty = build_batch(gateway.private, gateway.gateway_id, gateway.site_id, 0, (1, 2), [], [], gateway.prev, 3)
    header = dict(empty.header, window=window)
    signed = bytes(cose.sign1(gateway.private, gateway.gateway_id.encode(), cbor.encode(header)))
    response = upload(sqlite_client, gateway, type(empty)(signed, header, []))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "malformed_batch" and "window" in response.json()["detail"]
    listed = sqlite_client.get("/api/v1/console/batches", headers=auth(ADMIN_KEY))
    assert listed.status_code == 200, listed.text
    # The gateway's well-formed batch still goes through afterwards.
    good, _ = gateway.build()
    assert upload(sqlite_client, gateway, good).status_code == 201
    assert sqlite_client.get("/api/v1/console/batches", headers=auth(ADMIN_KEY)).status_code == 200
