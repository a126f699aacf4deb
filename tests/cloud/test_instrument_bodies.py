"""Hostile bodies on POST /api/v1/sites/{site_id}/instruments, on SQLite and PostgreSQL: each is a 4xx with its
reason, nothing is registered, and the good registration after them still works. A lone surrogate in the issuer
crashed the database write (500) and a duplicate key registered whichever value came last; both are now
400 ambiguous_json, refused for every JSON route by the request limits before any route parses the body."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from cloud import models
from tests.cloud.cloud_testkit import auth, register_tenant
from tests.trace.trace_kit import ledger_of

GOOD = ('{"kind": "gec", "instrument_id": "GEC-1", "issuer": "China Green Certificate Platform", "volume_wh": 1000, '
        '"delivery": {"start": 1767225600, "end": 1769904000}, "rate_kg_per_kwh_e4": 0, "evidence_sha256": null}')


def _with(field: str, raw: str) -> str:
    """GOOD with ``field``'s value replaced by the raw JSON text ``raw``."""
    head, rest = GOOD.split(f'"{field}": ', 1)
    tail = rest[rest.index(", ") if not rest.startswith("{") else rest.index("}") + 1:]
    return f'{head}"{field}": {raw}{tail}'


HOSTILE: dict[str, tuple[str, int, str]] = {
    "lone-surrogate-issuer": (_with("issuer", r'"\ud800"'), 400, "surrogate"),
    "reversed-pair-issuer": (_with("issuer", r'"\ude00\ud83d"'), 400, "surrogate"),
    "lone-surrogate-id": (_with("instrument_id", r'"GEC\udc00"'), 400, "surrogate"),
    "duplicate-kind": (GOOD.replace('"kind": "gec"', '"kind": "gec", "kind": "ppa"'), 400, "duplicate key"),
    "nan-volume": (_with("volume_wh", "NaN"), 400, "NaN"),
    "infinite-rate": (_with("rate_kg_per_kwh_e4", "-Infinity"), 400, "Infinity"),
    "float-volume": (_with("volume_wh", "1000.0"), 422, "volume_wh"),
    "huge-integer": (_with("volume_wh", "1" + "0" * 5000), 400, ""),
    "exponent-volume": (_with("volume_wh", "1e3"), 422, "volume_wh"),
    "bool-rate": (_with("rate_kg_per_kwh_e4", "false"), 422, "rate_kg_per_kwh_e4"),
    "control-issuer": (_with("issuer", r'"a\u0007b"'), 422, "issuer"),
    "deep": ('{"kind": ' + "[" * 40 + "]" * 40 + "}", 400, "too_deep"),
    "truncated": (GOOD[:-7], 422, ""),
    "not-utf8": ("", 400, ""),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_instrument_body_is_a_4xx_and_registers_nothing(client: TestClient, name: str) -> None:
    tenant = register_tenant(client, f"Hostile {name}", devices=1)
    url = f"/api/v1/sites/{tenant.gateway.site_id}/instruments"
    headers = {**auth(tenant.enterprise_key), "content-type": "application/json"}
    text, status, reason = HOSTILE[name]
    body = b'{"kind": "\xff\xfe"}' if name == "not-utf8" else text.encode("utf-8")
    r = client.post(url, content=body, headers=headers)
    assert r.status_code == status, (name, r.status_code, r.text[:300])
    assert reason in r.text, r.text[:300]
    with ledger_of(client).read_session_factory() as session:
        assert session.query(models.ContractualInstrument).filter_by(site_id=tenant.gateway.site_id).count() == 0
    # the cloud lives and the good record is still registered
    r = client.post(url, content=GOOD.encode(), headers=headers)
    assert r.status_code == 201, r.text
    assert client.get(url, headers=auth(tenant.enterprise_key)).json()[0]["record"]["kind"] == "gec"


@pytest.mark.parametrize("lookalike", ["China\u200bGreen Certificate Platform", "China\u00a0Green Certificate Platform",
                                       "China Green Certificate Platform\u2060", "China  Green Certificate Platform"])
def test_the_same_certificate_under_a_lookalike_issuer_is_not_registered_twice(
    client: TestClient, lookalike: str
) -> None:
    # the identity is (issuer, instrument_id), compared exactly: an issuer that prints the same but is another
    # string registered the certificate a second time for the same delivery (its energy counted twice)
    tenant = register_tenant(client, "Lookalike", devices=1)
    url = f"/api/v1/sites/{tenant.gateway.site_id}/instruments"
    headers = {**auth(tenant.enterprise_key), "content-type": "application/json"}
    assert client.post(url, content=GOOD.encode(), headers=headers).status_code == 201
    twin = GOOD.replace('"China Green Certificate Platform"', json.dumps(lookalike))
    r = client.post(url, content=twin.encode(), headers=headers)
    assert r.status_code == 422 and "instrument.issuer" in r.text, (r.status_code, r.text)
    assert len(client.get(url, headers=auth(tenant.enterprise_key)).json()) == 1
