"""The Alembic migrations produce exactly the tables the models describe; settings refuse placeholders."""

from __future__ import annotations

import json
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


def test_settings_refuse_placeholder_secrets_outside_development() -> None:
    assert Settings(environment="development").admin_api_key.get_secret_value()
    with pytest.raises(ValidationError, match="ADMIN_API_KEY"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(environment="production", admin_api_key="short")
    Settings(environment="production", admin_api_key="k" * 40)


def test_cli_bootstrap_prints_a_working_operator_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_CLOUD_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    runner = CliRunner()
    result = runner.invoke(cloud_app, ["bootstrap"])
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    assert key.startswith("ct_") and len(key) == 67
    from cloud.db import session_factory
    from cloud.security import Role, authenticate

    engine = make_engine(f"sqlite:///{tmp_path}/cli.db")
    with session_factory(engine)() as session:
        principal = authenticate(session, key)
    engine.dispose()
    assert principal is not None and principal.role == Role.OPERATOR
    result = runner.invoke(cloud_app, ["keygen", "--path", str(tmp_path / "k.hex")])
    assert result.exit_code == 0 and len(result.output.strip()) == 130
    assert runner.invoke(cloud_app, ["keygen", "--path", str(tmp_path / "k.hex")]).exit_code == 1


def test_cli_register_gateway_keys_runs_on_the_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded defaults keep their files under the working directory
    monkeypatch.setenv("CT_CLOUD_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    result = CliRunner().invoke(cloud_app, ["register-gateway-keys"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"registered": [], "recorded": [], "conflicts": {}}
