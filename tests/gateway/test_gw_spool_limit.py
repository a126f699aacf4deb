"""`carbontrace gateway spool status|set-limit`: a full spool (halt spool_over_limit) resolved on the running
gateway (real Mosquitto), without editing its config or restarting it, while the cloud is still away: the new
limit is kept in the spool, ingest resumes, the broker redelivers what was left unacknowledged and every reading
is held once; `--from-config` goes back to spool_max_bytes."""

from __future__ import annotations

import json
from pathlib import Path

from gw_helpers import Device, InProcessGateway, make_gateway_key, make_stub, publish_all, topic, write_config
from typer.testing import CliRunner

from carbontrace.servers import wait_until
from edge_gateway.cli import gateway_app
from tests.conftest import MosquittoBroker


def _cli(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(gateway_app, list(args))
    assert result.exit_code == 0, result.output
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_set_limit_resolves_a_full_spool_on_the_running_gateway(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    a = Device("dev-a")
    key_file, gw_public = make_gateway_key(tmp_path)
    stub = make_stub(gw_public, [a])
    limit = 16 * 1024
    config = write_config(tmp_path, key_file, stub.url, mosquitto, window_s=1, spool_max_bytes=limit)
    try:
        with InProcessGateway(config) as gw:
            wait_until(lambda: gw.gateway.ingest.connected.is_set(), 10, "MQTT connection")
            stub.stop()  # the cloud is away for the whole test: only the new limit can resume ingest
            publish_all(mosquitto, [(topic("dev-a"), a.signed(s)) for s in range(300)])
            wait_until(lambda: gw.gateway.ingest.paused == "spool_over_limit", 45, "ingest pause")
            full = _cli("spool", "status", "--config", str(config))
            assert full["over_limit"] and full["byte_limit"] == limit and full["limit_from"] == "config", full
            halts = json.loads(CliRunner().invoke(gateway_app, ["status", "--config", str(config)]).stdout)["halts"]
            assert [h["state"] for h in halts] == ["spool_over_limit"]
            assert "spool set-limit" in halts[0]["resolve"]

            raised = _cli("spool", "set-limit", "--max-bytes", str(1 << 24), "--config", str(config))
            assert (raised["byte_limit"], raised["over_limit"], raised["limit_from"]) == (
                1 << 24, False, "spool set-limit"), raised
            wait_until(lambda: gw.gateway.ingest.paused is None, 15, "ingest resumed")
            wait_until(lambda: sum(n for n, _ in gw.spool().device_counts().values()) == 300, 30,
                       "every reading held after the new limit")
            assert gw.gateway.metrics.registry.get_sample_value(
                "ct_gateway_ingest_paused", {"reason": "spool_over_limit"}) == 0
            status = json.loads(CliRunner().invoke(gateway_app, ["status", "--config", str(config)]).stdout)
            assert status["halts"] == [] and status["missing_readings"] == 0, status

            back = _cli("spool", "set-limit", "--from-config", "--config", str(config))
            assert (back["byte_limit"], back["limit_from"]) == (limit, "config"), back
    finally:
        stub.stop()
