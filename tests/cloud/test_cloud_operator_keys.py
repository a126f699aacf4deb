"""No well-known operator key: the old placeholder opens nothing, the operator key is made at bootstrap, rotation
revokes the old one, and failed keys are rate limited per client address."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.cli import cloud_app
from cloud.rate_limit import FailureLimiter
from tests.cloud.cloud_testkit import app_client, auth, make_settings

OLD_PLACEHOLDER = "dev-admin-key-change-me"  # what Settings() used to accept as the operator key
OPERATOR_ONLY = "/api/v1/regulators"


def _fresh_settings(tmp_path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    """Settings whose bootstrap makes the key itself (no key file prepared by the test kit)."""
    settings = make_settings(tmp_path, **overrides)
    Path(settings.operator_key_file).unlink()
    return settings


def test_the_old_placeholder_key_opens_nothing(tmp_path: Path) -> None:
    with app_client(_fresh_settings(tmp_path)) as client:
        r = client.post(OPERATOR_ONLY, json={"label": "x"}, headers=auth(OLD_PLACEHOLDER))
        assert r.status_code == 401
        made = Path(tmp_path / "operator-api-key").read_text().strip()
        assert client.post(OPERATOR_ONLY, json={"label": "x"}, headers=auth(made)).status_code == 201


def test_rotation_revokes_the_old_operator_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _fresh_settings(tmp_path)
    monkeypatch.setenv("CT_CLOUD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CT_CLOUD_OPERATOR_KEY_FILE", settings.operator_key_file)
    with app_client(settings) as client:
        old = Path(settings.operator_key_file).read_text().strip()
        assert client.post(OPERATOR_ONLY, json={"label": "a"}, headers=auth(old)).status_code == 201
        result = CliRunner().invoke(cloud_app, ["rotate-operator-key"])
        assert result.exit_code == 0, result.output
        new = Path(settings.operator_key_file).read_text().strip()
        assert new != old and new not in result.output
        # the running cloud refuses the old key at once
        assert client.post(OPERATOR_ONLY, json={"label": "b"}, headers=auth(old)).status_code == 401
        assert client.post(OPERATOR_ONLY, json={"label": "c"}, headers=auth(new)).status_code == 201
    # and a restart does not bring it back (nor adopt anything: an operator key exists)
    with app_client(settings) as client:
        assert client.post(OPERATOR_ONLY, json={"label": "d"}, headers=auth(old)).status_code == 401
        assert client.post(OPERATOR_ONLY, json={"label": "e"}, headers=auth(new)).status_code == 201


def test_failed_keys_are_rate_limited_per_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_failure_burst=5, auth_failures_per_minute=6)
    operator = Path(settings.operator_key_file).read_text().strip()
    with app_client(settings) as client:
        for i in range(5):
            r = client.get("/api/v1/enterprises/ENT-X", headers=auth(f"ct_{i:064x}"))
            assert r.status_code == 401, (i, r.text)
        r = client.get("/api/v1/enterprises/ENT-X", headers=auth("ct_" + "f" * 64))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        # blocked before the key is looked at: even the right key waits (a guess is never evaluated)
        assert client.post(OPERATOR_ONLY, json={"label": "x"}, headers=auth(operator)).status_code == 429
        # requests without a key (the public routes) are not limited
        assert client.get("/api/v1/platforms").status_code == 200


def test_valid_keys_do_not_count_and_buckets_refill() -> None:
    now = [0.0]
    limiter = FailureLimiter(burst=3, per_minute=6, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") is None
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 10  # one token every 10 s
    assert limiter.retry_after("10.0.0.2") is None  # another address is unaffected
    now[0] += 10
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 10


def test_the_limiter_forgets_the_oldest_addresses_first() -> None:
    limiter = FailureLimiter(burst=1, per_minute=1, max_addresses=2)
    for address in ("a", "b", "c"):
        limiter.failed(address)
    assert limiter.retry_after("a") is None and limiter.retry_after("c") is not None
