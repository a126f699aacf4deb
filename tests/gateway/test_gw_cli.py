"""The typer sub-app (mounted by the lead as `carbontrace gateway`): keygen, status, settings."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from gw_helpers import API_KEY, Device, topic, write_config
from typer.testing import CliRunner

from carbontrace_protocol import p256
from edge_gateway.cli import gateway_app
from edge_gateway.config import load_settings
from edge_gateway.keys import load_private_key

runner = CliRunner()


def test_keygen_writes_a_private_key_file_and_prints_the_public_key(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "gateway.key"
    result = runner.invoke(gateway_app, ["keygen", str(key_file)])
    assert result.exit_code == 0, result.output
    public = bytes.fromhex(result.output.strip())
    assert len(public) == 65 and public == bytes(p256.public_key(load_private_key(key_file)))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = runner.invoke(gateway_app, ["keygen", str(key_file)])
    assert again.exit_code == 1 and bytes(p256.public_key(load_private_key(key_file))) == public
    forced = runner.invoke(gateway_app, ["keygen", str(key_file), "--force"])
    assert forced.exit_code == 0 and bytes.fromhex(forced.output.strip()) != public


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_may_read_is_refused_not_used(tmp_path: Path, mode: int) -> None:
    """An existing key with group/other bits is refused with the fix in the message, by the loader and by
    `gateway run` (exit 1, no traceback); narrowing it silently would hide that it may have been copied."""
    from carbontrace_host.secret_files import SecretTooOpen

    key_file = tmp_path / "keys" / "gateway.key"
    assert runner.invoke(gateway_app, ["keygen", str(key_file)]).exit_code == 0
    key_file.chmod(mode)
    with pytest.raises(SecretTooOpen, match=f"mode {mode:04o}.*chmod 600"):
        load_private_key(key_file)
    result = runner.invoke(gateway_app, ["run", "--config", str(write_config(tmp_path, key_file, "http://cloud", 1))])
    assert result.exit_code == 1 and f"mode {mode:04o}" in result.output, result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == mode  # refused, not changed behind the operator's back
    key_file.chmod(0o600)
    assert load_private_key(key_file)


def test_the_service_units_create_files_for_their_user_only() -> None:
    root = Path(__file__).resolve().parents[2]
    for unit in ("edge_gateway/carbontrace-gateway.service", "cloud/carbontrace-cloud.service"):
        lines = (root / unit).read_text().splitlines()
        assert "UMask=0077" in lines, unit
        assert lines.index("UMask=0077") > lines.index("[Service]"), unit


def test_settings_come_from_toml_with_env_overrides_and_secrets_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, tmp_path / "k", "http://cloud", 1883, window_s=900)
    monkeypatch.setenv("CT_GATEWAY_WINDOW_S", "300")
    monkeypatch.setenv("CT_GATEWAY_MQTT_PASSWORD", "hunter2")
    settings = load_settings(config)
    assert settings.window_s == 300 and settings.site_id == "site-a"
    assert settings.api_key.get_secret_value() == API_KEY
    shown = json.dumps(settings.redacted())
    assert API_KEY not in shown and "hunter2" not in shown and "********" in shown
    monkeypatch.setenv("CT_GATEWAY_WINDOW_S", "0")
    with pytest.raises(ValueError):
        load_settings(config)


def test_status_reports_the_spool(tmp_path: Path) -> None:
    from edge_gateway.classify import DeviceEntry, classify_message
    from edge_gateway.spool import Spool

    config = write_config(tmp_path, tmp_path / "k", "http://cloud", 1883)
    device = Device("dev-a")
    spool = Spool(tmp_path / "spool.sqlite")
    registry = {"dev-a": DeviceEntry("dev-a", device.public, "active")}
    import time

    outcomes = [classify_message(topic("dev-a"), device.signed(s), "site-a", registry.get, int(time.time()), 300)
                for s in (1, 2, 5)]
    spool.ingest(outcomes, [], 900)  # type: ignore[arg-type]
    spool.close()
    result = runner.invoke(gateway_app, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["open_readings"] == 3 and report["missing_readings"] == 2
    assert report["gaps"] == {"dev-a": [[3, 4]]} and report["devices"]["dev-a"]["accepted"] == 3


def test_status_lists_each_halt_with_its_resolving_command(tmp_path: Path) -> None:
    """A spool over its byte limit and a halted upload (a 422; then a revoked gateway): each is a line under
    "halts" naming the command that resolves it; a healthy spool has none."""
    import time

    from edge_gateway.classify import DeviceEntry, classify_message
    from edge_gateway.spool import Spool

    device = Device("dev-a")
    registry = {"dev-a": DeviceEntry("dev-a", device.public, "active")}
    spool = Spool(tmp_path / "spool.sqlite")
    outcomes = [classify_message(topic("dev-a"), device.signed(s), "site-a", registry.get, int(time.time()), 300)
                for s in range(1, 6)]
    spool.ingest(outcomes, [], 900)  # type: ignore[arg-type]
    held = spool.held_bytes()
    spool.close()

    def halts(**settings: object) -> list[dict[str, object]]:
        config = write_config(tmp_path, tmp_path / "k", "http://cloud", 1883, **settings)
        result = runner.invoke(gateway_app, ["status", "--config", str(config)])
        assert result.exit_code == 0, result.output
        found: list[dict[str, object]] = json.loads(result.stdout)["halts"]
        return found

    assert halts(spool_max_bytes=held + 1) == []
    (full,) = halts(spool_max_bytes=held - 1)
    assert (full["state"], full["held_bytes"], full["max_bytes"]) == ("spool_over_limit", held, held - 1)
    assert "spool_max_bytes" in str(full["resolve"]) and "spool set-limit" in str(full["resolve"])
    spool = Spool(tmp_path / "spool.sqlite")
    pages = int(spool.db.execute("PRAGMA page_count").fetchone()[0])
    assert int(spool.db.execute("PRAGMA freelist_count").fetchone()[0]) == 0
    spool.close()
    (disk,) = halts(spool_max_bytes=held + 1, spool_max_page_count=pages)  # the file at its ceiling, none free
    assert disk["state"] == "spool_disk_full" and "free space" in str(disk["resolve"])

    for reason, state, command in (("unknown_device", "upload_halted", "uploads retry"),
                                   ("gateway_revoked", "gateway_revoked", "provision gateway")):
        spool = Spool(tmp_path / "spool.sqlite")
        spool.set_meta("upload_halted", json.dumps({"reason": reason, "batch_id": "gw-1/0"}))
        spool.close()
        (halt,) = halts(spool_max_bytes=held + 1)
        assert (halt["state"], halt["reason"], halt["batch_id"]) == (state, reason, "gw-1/0")
        assert command in str(halt["resolve"])
