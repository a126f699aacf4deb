"""schemathesis against the console's own operations (OpenAPI, through the ASGI app): no 5xx for any
generated input, with an operator key so generated requests get past authentication to the queries."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cloud.app import create_app
from tests.cloud.cloud_testkit import ADMIN_KEY, auth, make_settings, register_tenant, upload

_TMP = Path(tempfile.mkdtemp(prefix="ct-console-fuzz-"))
APP = create_app(make_settings(_TMP))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(
    path_regex=r"^/api/v1/(console/|gateways/\{gateway_id\}/health)"
)


@pytest.fixture(scope="module", autouse=True)
def populated() -> Iterator[None]:
    from fastapi.testclient import TestClient

    with TestClient(APP) as client:
        tenant = register_tenant(client, "Fuzz Co", devices=1)
        batch, _ = tenant.gateway.build()
        assert upload(client, tenant.gateway, batch).status_code == 201
        yield
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_console_operations_never_answer_5xx(case: schemathesis.Case) -> None:
    response = case.call(headers=auth(ADMIN_KEY))
    assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text[:500])
