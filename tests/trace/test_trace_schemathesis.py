"""schemathesis against our own OpenAPI schema, through the ASGI app: no 5xx for any generated input.

Only the trace, statement and /rpc operations (this area's), on an app that holds real anchored batches so
generated queries reach the locate/retrieve/verify code. Bounded: a few examples per operation, < 60 s."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cloud.app import create_app
from tests.cloud.cloud_testkit import make_settings
from tests.trace.trace_kit import anchor, tenant_with_batches

_TMP = Path(tempfile.mkdtemp(prefix="ct-schemathesis-"))
APP = create_app(make_settings(_TMP))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(
    path_regex=r"^/(api/v1/trace/|api/v1/enterprises/\{enterprise_id\}/statement|rpc)"
)


@pytest.fixture(scope="module", autouse=True)
def anchored_data() -> Iterator[None]:
    from fastapi.testclient import TestClient

    with TestClient(APP) as client:
        tenant_with_batches(client, "Fuzz Co", batches=2)
        anchor(client)
        yield
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text[:500])
