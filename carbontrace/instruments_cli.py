"""`carbontrace instruments`: a site's contractual instruments for market-based Scope 2 (certificates and
contracts; cloud/routers/instruments.py, docs/accounting.md "Market-based Scope 2"). `add` registers one for
an enterprise's own site, `list` prints a site's. A refusal (its status and reason) or an unreachable cloud is
a message on stderr and exit 1."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from carbontrace.factors_cli import (
    CLOUD_OPTION,
    KEY_FILE_OPTION,
    Refused,
    api_key_of,
    cloud_client,
    created,
    segment,
)

instruments_app = typer.Typer(help="Contractual instruments of a site (market-based Scope 2).", no_args_is_help=True)

_SITE = Annotated[str, typer.Option(help="the site id")]


def add_instrument(http: httpx.Client, api_key: str, site_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """POST the record (without site_id: the path's); the answer {record, record_sha256, registered_at}."""
    return created(http, api_key, f"/api/v1/sites/{segment(site_id)}/instruments", record, "instrument registration")


def list_instruments(http: httpx.Client, api_key: str, site_id: str) -> list[dict[str, Any]]:
    r = http.get(f"/api/v1/sites/{segment(site_id)}/instruments", headers={"Authorization": f"Bearer {api_key}"})
    if r.status_code != 200:
        raise Refused(f"instrument list refused ({r.status_code}): {r.text}")
    return r.json()  # type: ignore[no-any-return]


@instruments_app.command("add")
def add_command(
    cloud: CLOUD_OPTION,
    api_key_file: KEY_FILE_OPTION,
    site_id: _SITE,
    kind: Annotated[str, typer.Option(help="gec, rec, go, i_rec or ppa")],
    instrument_id: Annotated[str, typer.Option(help="the certificate or contract number")],
    issuer: Annotated[str, typer.Option(help="who issued it (registry, platform or seller)")],
    volume_wh: Annotated[int, typer.Option(help="the energy it covers, Wh")],
    delivery_start: Annotated[int, typer.Option(help="start of its delivery period, unix seconds")],
    delivery_end: Annotated[int, typer.Option(help="end of its delivery period (exclusive), unix seconds")],
    rate_kg_per_kwh_e4: Annotated[int, typer.Option(help="emission rate of its power, 1e-4 kgCO2/kWh")] = 0,
    evidence_sha256: Annotated[str | None, typer.Option(help="sha256 (hex) of the certificate or contract")] = None,
) -> None:
    """Register an instrument for one of the enterprise's own sites; prints the canonical record and its sha256.
    The cloud checks the record (the reason names the field) and refuses an instrument already registered for
    an overlapping delivery (double counting)."""
    record = {
        "kind": kind,
        "instrument_id": instrument_id,
        "issuer": issuer,
        "volume_wh": volume_wh,
        "delivery": {"start": delivery_start, "end": delivery_end},
        "rate_kg_per_kwh_e4": rate_kg_per_kwh_e4,
        "evidence_sha256": evidence_sha256,
    }
    with cloud_client(cloud, timeout=30) as http:
        typer.echo(json.dumps(add_instrument(http, api_key_of(api_key_file), site_id, record), ensure_ascii=False))


@instruments_app.command("list")
def list_command(cloud: CLOUD_OPTION, api_key_file: KEY_FILE_OPTION, site_id: _SITE) -> None:
    """Print a site's instruments in registration order (JSON list of {record, record_sha256, registered_at})."""
    with cloud_client(cloud, timeout=30) as http:
        typer.echo(json.dumps(list_instruments(http, api_key_of(api_key_file), site_id), ensure_ascii=False))
