"""/healthz and /readyz against real dependencies (PostgreSQL, a Hardhat node, js-ipfs), each taken down in turn.

Each dependency sits behind a loopback TcpProxy: stopping the proxy makes it unreachable exactly as a dead server
is, while the session's server (and the chain's state) lives on for the other tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from carbontrace.servers import TcpProxy
from cloud.ledger import Ledger
from tests.cloud.cloud_testkit import app_client, auth, make_settings, register_tenant, upload
from tests.cloud.conftest import HardhatNode, IpfsDaemon, PostgresCluster
from tests.cloud.prometheus_text import value

DEPENDENCIES = ("database", "chain", "content_store")


@contextmanager
def proxied(port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _ready(client: TestClient) -> tuple[int, dict[str, Any]]:
    r = client.get("/readyz")
    return r.status_code, r.json()


def _down(body: dict[str, Any]) -> set[str]:
    return {name for name, check in body["checks"].items() if not check["ok"]}


def test_readyz_names_each_dependency_that_is_down(
    tmp_path: Path, postgres_cluster: PostgresCluster, cloud_hardhat_node: HardhatNode, ipfs_daemon: IpfsDaemon
) -> None:
    with ExitStack() as stack:
        db = stack.enter_context(proxied(postgres_cluster.port))
        chain = stack.enter_context(proxied(cloud_hardhat_node.port))
        ipfs = stack.enter_context(proxied(ipfs_daemon.api_port))
        database_url = postgres_cluster.create_database().replace(f":{postgres_cluster.port}/", f":{db.port}/")
        settings = make_settings(tmp_path, database_url=database_url, chain=f"http://127.0.0.1:{chain.port}",
                                 content_store=f"http://127.0.0.1:{ipfs.port}")
        with app_client(settings) as client:
            status, body = _ready(client)
            assert (status, body["ready"], _down(body)) == (200, True, set()), body
            assert set(body["checks"]) == set(DEPENDENCIES)

            for proxy, name in ((chain, "chain"), (ipfs, "content_store"), (db, "database")):
                proxy.stop()
                status, body = _ready(client)
                assert (status, body["ready"], _down(body)) == (503, False, {name}), body
                assert body["checks"][name]["error"]  # the error's class: nothing more (no URL, no message)
                assert "127.0.0.1" not in str(body)
                healthz = client.get("/healthz")
                assert healthz.status_code == 200 and healthz.json() == {"status": "alive"}  # alive, not ready
                proxy.start()
                status, body = _ready(client)
                assert (status, _down(body)) == (200, set()), body


def _ledger(client: TestClient) -> Ledger:
    return client.app.state.ledger  # type: ignore[attr-defined,no-any-return]


def test_chain_down_shows_in_metrics_as_errors_and_a_halt(tmp_path: Path, cloud_hardhat_node: HardhatNode) -> None:
    with proxied(cloud_hardhat_node.port) as chain:
        settings = make_settings(tmp_path, chain=f"http://127.0.0.1:{chain.port}")
        with app_client(settings) as client:
            token = Path(settings.metrics_token_path).read_text().strip()
            gw = register_tenant(client, "ChainDown", devices=1).gateway
            batch, _ = gw.build()
            assert upload(client, gw, batch).status_code == 201
            chain.stop()
            report = _ledger(client).anchorer.tick(force_checkpoint=True)
            assert (report.created, report.anchored) == (1, 0) and report.error
            text = client.get("/metrics", headers=auth(token)).text
            assert value(text, "ct_cloud_chain_errors_total", kind="unavailable") == 1
            assert value(text, "ct_cloud_anchoring_halted", reason="chain_unavailable") == 1
            assert value(text, "ct_cloud_checkpoints_pending") == 1
            assert value(text, "ct_cloud_unanchored_leaves") == 1
            chain.start()
            assert _ledger(client).anchorer.tick().anchored == 1
            text = client.get("/metrics", headers=auth(token)).text
            assert value(text, "ct_cloud_anchoring_halted", reason="chain_unavailable") == 0
            assert value(text, "ct_cloud_unanchored_leaves") == 0
