"""`provision device|gateway --dry-run` through the typer sub-app: files written, actions recorded, no board."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import typer
from carbontrace_device import config as device_config
from carbontrace_device.flashfs import FlashDir
from typer.testing import CliRunner

from carbontrace.provision import provision_app
from carbontrace.provision_plan import GATEWAY_UNIT
from carbontrace.provision_runner import ACTIONS_FILE, DRY_RUN_API_KEY, DRY_RUN_KEY_ORIGIN
from carbontrace_protocol import p256
from edge_gateway.config import load_settings
from edge_gateway.keys import load_private_key

app = typer.Typer()
app.add_typer(provision_app, name="provision")
runner = CliRunner()

DEVICE_ARGS = [
    "provision", "device", "--port", "/dev/ttyACM0", "--cloud", "https://cloud.example.org", "--api-key",
    "ct_secret_key", "--site", "plant-7", "--device-id", "dev-017", "--board", "picow", "--wifi-ssid", "plant-iot",
    "--wifi-password", "wifi-secret", "--broker", "192.168.10.2:1883", "--dry-run",
]


def test_device_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "dev"
    result = runner.invoke(app, [*DEVICE_ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.output
    assert "ct_secret_key" not in result.output and "wifi-secret" not in result.output

    # The settings file loads with the firmware's own loader, from a flash directory as on the board.
    assert stat.S_IMODE((out / "config.json").stat().st_mode) == 0o600
    settings = device_config.load(FlashDir(str(out)))
    assert (settings["device_id"], settings["site_id"], settings["i2c_sda"], settings["i2c_scl"]) == (
        "dev-017", "plant-7", 4, 5)
    assert settings["wifi_password"] == "wifi-secret" and settings["broker_host"] == "192.168.10.2"

    # The firmware really was built: the copy list names files that exist.
    actions = (out / ACTIONS_FILE).read_text().splitlines()
    copied = [line.split(": ", 1)[1].rsplit(" (", 1)[0] for line in actions if line.startswith("would copy: ")]
    assert str(out / "firmware" / "lib" / "carbontrace_device" / "keystore.mpy") in copied
    assert str(out / "firmware" / "main.py") in copied and str(out / "config.json") in copied
    assert all(Path(p).is_file() for p in copied)
    runs = [line for line in actions if line.startswith("would run: mpremote connect /dev/ttyACM0 ")]
    assert len(runs) == 6  # prepare, copy packages, copy main.py, copy config, keygen, reset
    assert runs[-1].endswith(" reset")
    posts = [line for line in actions if line.startswith("would POST ")]
    assert posts == [posts[0]] and "https://cloud.example.org/api/v1/sites/plant-7/devices" in posts[0]
    assert "ct_secret_key" not in (out / ACTIONS_FILE).read_text()

    # The record is labelled: the key is a stand-in, the registration was not sent.
    record = json.loads((out / "device-dev-017.json").read_text())
    assert record["dry_run"] is True and record["key_origin"] == DRY_RUN_KEY_ORIGIN
    assert record["registration"]["sent"] is False
    assert record["registration"]["body"]["public_key"] == record["public_key"]
    # No private key of the stand-in is written anywhere under --out.
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix != ".mpy"]
    assert not any("key" in p.name for p in written)


def test_device_dry_run_rejects_bad_input(tmp_path: Path) -> None:
    base = [a for a in DEVICE_ARGS]
    bad_board = base.copy()
    bad_board[bad_board.index("picow")] = "stm32"
    assert runner.invoke(app, [*bad_board, "--out", str(tmp_path / "a")]).exit_code == 2
    bad_id = base.copy()
    bad_id[bad_id.index("dev-017")] = "dev/017"
    result = runner.invoke(app, [*bad_id, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and not (tmp_path / "b").exists()
    bad_broker = base.copy()
    bad_broker[bad_broker.index("192.168.10.2:1883")] = "gw:99999"
    assert runner.invoke(app, [*bad_broker, "--out", str(tmp_path / "c")]).exit_code == 2


GATEWAY_ARGS = [
    "provision", "gateway", "--cloud", "https://cloud.example.org", "--api-key", "ct_secret_key", "--site",
    "plant-7", "--gateway-id", "gw-plant-7", "--dry-run",
]


def test_gateway_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gw"
    result = runner.invoke(app, [*GATEWAY_ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ct_secret_key" not in result.output

    key_file = out / "gateway.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    record = json.loads((out / "gateway-gw-plant-7.json").read_text())
    assert bytes(p256.public_key(load_private_key(key_file))).hex() == record["public_key"]
    assert record["dry_run"] is True and record["registration"]["sent"] is False

    settings = load_settings(out / "gateway.toml")
    assert (settings.gateway_id, settings.site_id, settings.cloud_url) == (
        "gw-plant-7", "plant-7", "https://cloud.example.org")
    assert settings.api_key.get_secret_value() == DRY_RUN_API_KEY
    assert str(settings.key_file) == "/etc/carbontrace/gateway.key"
    assert stat.S_IMODE((out / "gateway.toml").stat().st_mode) == 0o600
    assert (out / GATEWAY_UNIT.name).read_text() == GATEWAY_UNIT.read_text()
    # The unit starts the gateway with the settings file this plan installs.
    assert "--config /etc/carbontrace/gateway.toml" in GATEWAY_UNIT.read_text()

    actions = (out / ACTIONS_FILE).read_text().splitlines()
    assert f"would run: install -m 0600 -o carbontrace -g carbontrace {key_file} /etc/carbontrace/gateway.key" in actions
    assert actions[-1] == "would run: systemctl enable --now carbontrace-gateway.service"
    assert any(line.startswith("would POST https://cloud.example.org/api/v1/sites/plant-7/gateways") for line in actions)


def test_gateway_rerun_reuses_the_staged_key(tmp_path: Path) -> None:
    out = tmp_path / "gw"
    assert runner.invoke(app, [*GATEWAY_ARGS, "--out", str(out)]).exit_code == 0
    before = (out / "gateway.key").read_text()
    first = json.loads((out / "gateway-gw-plant-7.json").read_text())["public_key"]
    result = runner.invoke(app, [*GATEWAY_ARGS, "--out", str(out)])
    assert result.exit_code == 0 and "reusing the staged key" in result.output
    assert (out / "gateway.key").read_text() == before
    assert json.loads((out / "gateway-gw-plant-7.json").read_text())["public_key"] == first


def test_real_device_run_without_a_board_stops_at_the_first_board_step(tmp_path: Path) -> None:
    """The real mpremote against a port with no board: the run stops there, nothing is registered."""
    out = tmp_path / "dev"
    args = [a for a in DEVICE_ARGS if a != "--dry-run"]
    args[args.index("/dev/ttyACM0")] = str(tmp_path / "ttyNOPE0")
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 1
    assert "provisioning failed: remove the old app" in result.output
    assert f"failed to access {tmp_path / 'ttyNOPE0'}" in result.output
    assert (out / "firmware" / "main.py").is_file()  # the local build ran
    assert not (out / "device-dev-017.json").exists() and not (out / ACTIONS_FILE).exists()
