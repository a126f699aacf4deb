"""Issue 13, item 5: integers in queries and paths are bounded (cloud/params.py).

2**64 in a query parameter was a 500 (past the database's 64-bit integers) and ``limit=-1`` returned every
row. The routes and their integer parameters are read from the app itself, so a new route with an unbounded
integer fails here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from cloud.app import create_app
from tests.cloud.cloud_testkit import ADMIN_KEY, auth, make_settings, register_tenant


def _int_params(tmp: Path) -> list[tuple[str, str, Any, list[Any]]]:
    """(path, parameter name, its FastAPI param, all params of the route) for every integer query/path param."""
    app = create_app(make_settings(tmp))
    found = []
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route.route, "dependant", None)
        if dependant is None or "GET" not in (route.methods or set()):
            continue

        def walk(d: Any) -> Iterator[Any]:
            yield from d.query_params
            yield from d.path_params
            for sub in d.dependencies:
                yield from walk(sub)

        params = list(walk(dependant))
        for param in params:
            if "int" in str(param.field_info.annotation):
                found.append((str(route.path), param.name, param, params))
    assert len(found) >= 20, [f[:2] for f in found]
    return found


PARAMS = _int_params(Path(__import__("tempfile").mkdtemp(prefix="ct-params-")))
IDS = [f"{path}:{name}" for path, name, _, _ in PARAMS]


@pytest.mark.parametrize(("path", "name", "param", "params"), PARAMS, ids=IDS)
def test_every_integer_parameter_has_both_bounds(path: str, name: str, param: Any, params: list[Any]) -> None:
    metadata = param.field_info.metadata
    assert any(isinstance(m, annotated_types.Ge) for m in metadata), f"{path} {name}: no lower bound"
    upper = [int(m.le) for m in metadata if isinstance(m, annotated_types.Le)]  # type: ignore[call-overload]
    assert upper and upper[0] < 2**63, f"{path} {name}: no upper bound inside int64"


@pytest.fixture
def keys(sqlite_client: TestClient) -> list[str]:
    tenant = register_tenant(sqlite_client, "Bounds", devices=1)
    return [ADMIN_KEY, tenant.enterprise_key, tenant.engineer_key, tenant.gateway.api_key]


def _request(client: TestClient, keys: list[str], path: str, params: list[Any], name: str, value: int) -> Any:
    """GET the route with ``name`` = value and every other parameter valid, as the first role it admits."""
    url, query = path, {}
    for other in params:
        filler: Any = value if other.name == name else (1 if "int" in str(other.field_info.annotation) else "x")
        if "{" + other.name + "}" in url:
            url = url.replace("{" + other.name + "}", str(filler))
        elif other.name == name or other.field_info.is_required():
            query[other.alias] = filler
    response = None
    for key in keys:
        response = client.get(url, params=query, headers=auth(key))
        if response.status_code not in (401, 403):
            break
    return response


BAD_VALUES = [2**64, 2**63, -2]
LIMIT_VALUES = [-1, 0, 10**9]


@pytest.mark.parametrize(("path", "name", "param", "params"), PARAMS, ids=IDS)
def test_out_of_range_integers_are_422(
    sqlite_client: TestClient, keys: list[str], path: str, name: str, param: Any, params: list[Any]
) -> None:
    values = BAD_VALUES + (LIMIT_VALUES if name == "limit" else [])
    for value in values:
        response = _request(sqlite_client, keys, path, params, name, value)
        assert response.status_code == 422, (value, response.status_code, response.text[:200])
        if abs(value) > 10**6:
            assert str(value) not in response.text  # the 422 names the bound, not the input


# Every route with a period [start, end): both given, end must be after start (an empty or reversed period
# reached the proof-bundle parser as a 500 on /trace/bundle?encoding=cbor).
PERIOD_ROUTES = sorted({(path, tuple(params)) for path, name, _, params in PARAMS if name == "start"
                        and any(p.name == "end" for p in params)}, key=lambda r: r[0])


def test_the_period_routes_are_found() -> None:
    paths = {path for path, _ in PERIOD_ROUTES}
    assert {"/api/v1/trace/locate", "/api/v1/trace/bundle", "/api/v1/console/emissions"} <= paths, paths


@pytest.mark.parametrize(("path", "params"), PERIOD_ROUTES, ids=[p for p, _ in PERIOD_ROUTES])
@pytest.mark.parametrize(("start", "end"), [(5, 5), (6, 5)], ids=["empty", "reversed"])
def test_an_empty_or_reversed_period_is_422(
    sqlite_client: TestClient, path: str, params: tuple[Any, ...], start: int, end: int
) -> None:
    tenant = register_tenant(sqlite_client, "Period", devices=1)
    keys = [ADMIN_KEY, tenant.enterprise_key]
    url, query = path.replace("{enterprise_id}", tenant.enterprise_id), {"start": start, "end": end}
    assert "{" not in url, url
    for encoding in ({}, {"encoding": "cbor"}) if path.endswith("/bundle") else ({},):
        response = None
        for key in keys:
            response = sqlite_client.get(url, params=query | encoding, headers=auth(key))
            if response.status_code not in (401, 403, 404):
                break
        assert response is not None
        assert response.status_code == 422 and "end must be after start" in response.text, (
            response.status_code, response.text[:300])
