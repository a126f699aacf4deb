"""The Alembic migrations produce exactly the tables the models describe; settings refuse placeholders."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from typer.testing import CliRunner

from cloud.cli import cloud_app
from cloud.db import make_engine, migrate
from cloud.models import Base
from cloud.settings import Settings


def test_migrations_match_models(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # idempotent at start-up
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_settings_refuse_a_configured_operator_key_and_a_public_bind_in_development() -> None:
    with pytest.raises(ValidationError, match="no longer read"):
        Settings(admin_api_key="dev-admin-key-change-me")
    with pytest.raises(ValidationError, match="no longer read"):
        Settings(environment="production", admin_api_key="k" * 40)
    with pytest.raises(ValidationError, match="loopback only"):
        Settings(host="0.0.0.0")
    with pytest.raises(ValidationError, match="loopback only"):
        Settings(host="192.168.1.20")
    Settings(host="::1")
    Settings(host="localhost")
    Settings(environment="production", host="0.0.0.0")


def test_cli_serve_refuses_a_public_bind_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CT_CLOUD_ENVIRONMENT", raising=False)
    result = CliRunner().invoke(cloud_app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "loopback only" in result.output


def test_cli_bootstrap_writes_a_working_operator_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_CLOUD_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("CT_CLOUD_OPERATOR_KEY_FILE", str(tmp_path / "secrets" / "operator-api-key"))
    monkeypatch.setenv("CT_CLOUD_SIGNING_KEY_FILE", str(tmp_path / "secrets" / "cloud-key.hex"))
    monkeypatch.setenv("CT_CLOUD_CHAIN_KEY_FILE", str(tmp_path / "secrets" / "chain-key.hex"))
    runner = CliRunner()
    result = runner.invoke(cloud_app, ["bootstrap"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    key_file = tmp_path / "secrets" / "operator-api-key"
    assert report["operator_key_file"] == str(key_file)
    key = key_file.read_text().strip()
    assert key.startswith("ct_") and len(key) == 67 and key not in result.output
    for name in ("operator-api-key", "cloud-key.hex", "chain-key.hex"):
        assert stat.S_IMODE((tmp_path / "secrets" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert report["chain_account"].startswith("0x")
    account = json.loads(runner.invoke(cloud_app, ["chain-account"]).stdout)
    assert account["chain_account"] == report["chain_account"] and account["balance_wei"] == 0
    from cloud.db import session_factory
    from cloud.security import Role, authenticate

    engine = make_engine(f"sqlite:///{tmp_path}/cli.db")
    with session_factory(engine)() as session:
        principal = authenticate(session, key)
    assert principal is not None and principal.role == Role.OPERATOR
    again = json.loads(runner.invoke(cloud_app, ["bootstrap"]).stdout)
    assert again["operator_key_file"] is None and key_file.read_text().strip() == key  # made once
    engine.dispose()
    result = runner.invoke(cloud_app, ["keygen", "--path", str(tmp_path / "k.hex")])
    assert result.exit_code == 0 and len(result.output.strip()) == 130
    assert runner.invoke(cloud_app, ["keygen", "--path", str(tmp_path / "k.hex")]).exit_code == 1


def test_cli_register_gateway_keys_runs_on_the_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded defaults keep their files under the working directory
    monkeypatch.setenv("CT_CLOUD_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    result = CliRunner().invoke(cloud_app, ["register-gateway-keys"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"registered": [], "recorded": [], "conflicts": {}}
