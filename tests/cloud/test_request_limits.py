"""Issue 13, item 1: no request body may kill the cloud.

The real cloud (uvicorn, embedded chain) in its own process; every route that takes a body gets a body of
100,000 nested ``[`` and a body one byte over its limit; each must answer a 4xx with a reason and the same
process must answer the next request. Before cloud/request_limits.py the first deep body killed it (SIGSEGV).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from carbontrace.servers import REPO_ROOT, CloudProcess
from cloud.app import create_app
from cloud.request_limits import rules_from_settings
from cloud.settings import Settings
from tests.cloud.cloud_testkit import make_settings

DEEP = b"[" * 100_000


def _body_routes(tmp: Path) -> list[tuple[str, str]]:
    """(method, path with placeholders filled) for every POST/PUT/PATCH route of the app."""
    app = create_app(make_settings(tmp))
    found = []
    for route in iter_route_contexts(app.routes):
        for method in sorted((route.methods or set()) & {"POST", "PUT", "PATCH"}):
            path = str(route.path)
            for name in ("enterprise_id", "platform_id", "site_id", "gateway_id", "device_id", "regulator_id"):
                path = path.replace("{" + name + "}", "x")
            assert "{" not in path, f"fill the placeholder of {path}"
            found.append((method, path))
    assert len(found) >= 10, found
    return found


ROUTES = _body_routes(Path(__import__("tempfile").mkdtemp(prefix="ct-routes-")))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudProcess]:
    process = CloudProcess(tmp_path_factory.mktemp("cloud"), jobs_interval_s=0)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _still_serving(cloud: CloudProcess) -> None:
    assert cloud.proc is not None and cloud.proc.poll() is None, f"cloud died: {cloud.proc and cloud.proc.poll()}"
    assert httpx.get(f"{cloud.url}/api/v1/log/checkpoints", timeout=10).status_code == 200


def _reason(response: httpx.Response) -> str:
    body = response.json()
    return str(body.get("error") or body.get("detail"))


@pytest.mark.parametrize("content_type", ["application/json", "application/merge-patch+json", None, "text/plain"])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_deep_json_body_is_refused_and_the_cloud_lives(
    cloud: CloudProcess, method: str, path: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.request(method, cloud.url + path, content=DEEP, headers=headers, timeout=30)
    if path == "/rpc" and response.status_code == 200:  # not JSON (text/plain): a JSON-RPC error, unparsed
        assert response.json()["error"]["code"] == -32600, response.text[:300]
    else:
        assert 400 <= response.status_code < 500, response.text[:300]
        assert _reason(response)
    assert len(response.content) < 2000  # the body is not echoed
    _still_serving(cloud)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_oversized_body_is_refused_with_413(cloud: CloudProcess, method: str, path: str) -> None:
    limit = rules_from_settings(Settings()).for_path(path).max_bytes
    response = httpx.request(
        method, cloud.url + path, content=b" " * (limit + 1), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"] == "too_large"
    _still_serving(cloud)


def test_streamed_body_without_length_is_bounded(cloud: CloudProcess) -> None:
    """No Content-Length (chunked): the limit is counted on the bytes as they arrive."""
    limit = Settings().max_body_bytes

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    try:
        response = httpx.post(f"{cloud.url}/rpc", content=chunks(), headers={"Content-Type": "application/json"},
                              timeout=30)
        assert response.status_code == 413
    except httpx.RemoteProtocolError:
        pass  # the server may close before the client finished sending: refused either way
    _still_serving(cloud)


def test_shallow_json_still_works(cloud: CloudProcess) -> None:
    response = httpx.post(f"{cloud.url}/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                                                    "params": []}, timeout=30)
    assert response.status_code == 200 and "result" in response.json(), response.text


def test_recursion_limit_is_capped_after_the_app_is_built(tmp_path: Path) -> None:
    """The second line of defence: even a parser the middleware does not guard raises, not segfaults."""
    script = textwrap.dedent(
        f"""
        import json, sys, threading
        from pathlib import Path
        from cloud.app import create_app
        from tests.cloud.cloud_testkit import make_settings
        create_app(make_settings(Path({str(tmp_path)!r})))
        outcome = []
        def parse():
            try:
                json.loads("[" * 100_000)
            except RecursionError:
                outcome.append("RecursionError")
        worker = threading.Thread(target=parse)
        worker.start(); worker.join()
        print(sys.getrecursionlimit(), outcome)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-1000:])
    limit, outcome = result.stdout.split(" ", 1)
    assert int(limit) <= 12288
    assert "RecursionError" in outcome
