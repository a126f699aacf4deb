"""schemathesis against every operation the area suites (trace, console, instruments) do not select, through
the ASGI app with the operator's key and again with an enterprise's: no 5xx for any generated input. Bounded:
a few examples per operation. test_every_operation_is_selected_by_a_suite keeps the union whole."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cloud.app import create_app
from tests.cloud.cloud_testkit import ADMIN_KEY, Tenant, auth, make_settings, register_tenant

# the other suites' selections (tests/trace, tests/console, tests/cloud/test_instruments_schemathesis.py)
AREA_SUITES = (
    r"^/(api/v1/trace/|api/v1/enterprises/\{enterprise_id\}/statement|rpc)",
    r"^/api/v1/(console/|gateways/\{gateway_id\}/health)",
    r"^/api/v1/sites/\{site_id\}/instruments$",
)
REST = r"^(?!" + "|".join(f"(?:{r[1:]})" for r in AREA_SUITES) + ")"

_TMP = Path(tempfile.mkdtemp(prefix="ct-rest-fuzz-"))
APP = create_app(make_settings(_TMP))
# the batch upload's body is CBOR (no serializer here): its hostile bytes are tests/protocol's and tests/cloud's
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=REST).exclude(
    method="POST", path="/api/v1/batches")
TENANT: list[Tenant] = []


@pytest.fixture(scope="module", autouse=True)
def populated() -> Iterator[None]:
    from fastapi.testclient import TestClient

    with TestClient(APP) as client:
        TENANT.append(register_tenant(client, "Fuzz Rest", devices=1))
        yield
    shutil.rmtree(_TMP, ignore_errors=True)


def test_every_operation_is_selected_by_a_suite() -> None:
    paths = APP.openapi()["paths"]
    assert all(any(re.search(r, p) for r in (*AREA_SUITES, REST)) for p in paths)
    assert sum(1 for p in paths if re.search(REST, p)) >= 30  # the negative look-ahead selects the rest


@pytest.mark.timeout(600)
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx(case: schemathesis.Case) -> None:
    for key in (ADMIN_KEY, TENANT[0].enterprise_key):
        response = case.call(headers=auth(key))
        assert response.status_code < 500, (case.method, case.formatted_path, case.query, case.body,
                                            response.text[:500])
