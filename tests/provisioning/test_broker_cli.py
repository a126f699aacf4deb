"""`carbontrace broker`: a configuration made by the CLI runs in Mosquitto; issued credentials work, others not."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from typer.testing import CliRunner

from carbontrace.broker_config import BrokerConfig, Credentials, MqttAccess
from carbontrace.cli import app
from carbontrace.servers import Mosquitto, free_port, wait_for_port
from carbontrace_protocol import topics


def test_init_issue_and_run(tmp_path: Path) -> None:
    runner = CliRunner()
    directory, port = tmp_path / "broker", free_port()
    result = runner.invoke(app, ["broker", "init", "--dir", str(directory), "--host", "127.0.0.1", "--port",
                                 str(port), "--bind", "127.0.0.1", "--run-as-root", "--fleet-size", "3"])
    assert result.exit_code == 0, result.output
    for args in (["issue-device", "--device", "dev-1", "--out", str(tmp_path / "dev-1.json")],
                 ["issue-gateway", "--gateway", "gw-1", "--out", str(tmp_path / "gw-1.json")]):
        result = runner.invoke(app, ["broker", *args, "--dir", str(directory), "--site", "s1"])
        assert result.exit_code == 0, result.output
    device = json.loads((tmp_path / "dev-1.json").read_text())
    gateway = json.loads((tmp_path / "gw-1.json").read_text())
    assert (tmp_path / "dev-1.json").stat().st_mode & 0o777 == 0o600
    config = BrokerConfig.open(directory)
    assert f"max_queued_messages {3 * 630}" in config.conf_file.read_text()
    proc = subprocess.Popen([Mosquitto.binary(), "-c", str(config.conf_file)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        got: list[bytes] = []
        sub = MqttAccess("127.0.0.1", port, config.ca_file,
                         Credentials(gateway["mqtt_username"], gateway["mqtt_password"])).paho(clean_session=False)
        sub.on_message = lambda c, u, m: got.append(bytes(m.payload))
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        sub.subscribe(topics.site_readings("s1"), qos=1)
        time.sleep(0.5)
        pub = MqttAccess("127.0.0.1", port, config.ca_file,
                         Credentials(device["broker_user"], device["broker_password"])).paho()
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish(topics.reading_topic("s1", "dev-1"), b"r", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [b"r"]
        result = runner.invoke(app, ["broker", "revoke", "--dir", str(directory), "dev-1"])
        assert result.exit_code == 0, result.output
        assert "dev-1" not in config.passwd_file.read_text()
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
    finally:
        proc.terminate()
        proc.wait(10)


def test_provision_device_issues_broker_credentials_into_its_settings(tmp_path: Path) -> None:
    from carbontrace.provision_plan import DeviceRequest, IssueBrokerCredentials, Mpremote, WriteJson, device_plan
    from carbontrace.provision_runner import PlanRunner

    broker_dir = tmp_path / "broker"
    BrokerConfig(broker_dir, port=8883, hosts=["gw.local"]).create()
    request = DeviceRequest(port="/dev/ttyUSB0", cloud_url="http://cloud", site_id="s1", device_id="dev-9",
                            out_dir=tmp_path / "out", broker="gw.local:8883", broker_config=broker_dir)
    plan = device_plan(request)
    kinds = [type(step).__name__ for step in plan]
    assert kinds.index("IssueBrokerCredentials") < kinds.index("WriteJson")
    assert any(isinstance(s, Mpremote) and s.copies == (broker_dir / "pki" / "ca.pem",) for s in plan)
    issue = next(s for s in plan if isinstance(s, IssueBrokerCredentials))
    settings_step = next(s for s in plan if isinstance(s, WriteJson))
    PlanRunner(dry_run=False, api_key="k", echo=lambda line: None).run([issue, settings_step], tmp_path / "out")
    settings = json.loads(settings_step.path.read_text())
    assert settings["broker_user"] == "dev-9" and len(settings["broker_password"]) >= 24
    assert settings["broker_ca"] == "broker-ca.pem" and settings_step.path.stat().st_mode & 0o777 == 0o600
    assert "user dev-9\ntopic write carbontrace/v1/s1/dev-9/reading" in (broker_dir / "acl").read_text()


def test_provision_gateway_issues_broker_credentials_into_gateway_toml(tmp_path: Path) -> None:
    import tomllib

    from carbontrace.provision_plan import GatewayRequest, IssueBrokerCredentials, WriteGatewayConfig, gateway_plan
    from carbontrace.provision_runner import PlanRunner

    broker_dir = tmp_path / "broker"
    BrokerConfig(broker_dir).create()
    request = GatewayRequest(cloud_url="http://cloud", site_id="s1", gateway_id="gw-7", out_dir=tmp_path / "out",
                             mqtt_port=8883, broker_config=broker_dir)
    plan = gateway_plan(request)
    steps = [s for s in plan if isinstance(s, IssueBrokerCredentials | WriteGatewayConfig)]
    assert [type(s).__name__ for s in steps] == ["IssueBrokerCredentials", "WriteGatewayConfig"]
    runner = PlanRunner(dry_run=False, api_key="k", echo=lambda line: None)
    runner.context["api_key"] = "cloud-issued"
    runner.run(steps, tmp_path / "out")
    written = steps[1]
    assert isinstance(written, WriteGatewayConfig)
    settings = tomllib.loads(written.path.read_text())["gateway"]
    assert settings["mqtt_username"] == "gw-gw-7" and len(settings["mqtt_password"]) >= 24
    assert settings["mqtt_ca_file"] == str(broker_dir / "pki" / "ca.pem")
    assert "user gw-gw-7\ntopic read carbontrace/v1/s1/+/reading" in (broker_dir / "acl").read_text()


def test_issue_gateway_with_workers_gives_each_worker_a_user(tmp_path: Path) -> None:
    runner = CliRunner()
    directory = tmp_path / "broker"
    BrokerConfig(directory, port=8883, hosts=["gw.local"]).create()
    result = runner.invoke(app, ["broker", "issue-gateway", "--dir", str(directory), "--site", "s1",
                                 "--gateway", "gw-1", "--workers", "3", "--out", str(tmp_path / "gw-1.json")])
    assert result.exit_code == 0, result.output
    assert "ingest_workers = 3" in result.output
    users = [line.split(":")[0] for line in BrokerConfig.open(directory).passwd_file.read_text().splitlines()]
    assert users == ["gw-gw-1", "gw-gw-1.w1", "gw-gw-1.w2"]
    result = runner.invoke(app, ["broker", "revoke", "--dir", str(directory), "gw-gw-1"])
    assert result.exit_code == 0, result.output
    assert BrokerConfig.open(directory).passwd_file.read_text() == ""
