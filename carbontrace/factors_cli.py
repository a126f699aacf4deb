"""`carbontrace factors`: the factor catalogue's answer for a location, a site's registration with its
location, and the restatement of a statement with newer factors (cloud/routers/sites.py, trace.py)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from carbontrace_protocol.emission_factors import load_catalogue
from carbontrace_protocol.factor_rule import BadLocation, NoFactor, SiteLocation, check_location, select_factor
from carbontrace_protocol.statement import factor_entry

factors_app = typer.Typer(help="Emission factors: the catalogue's rule, site locations, restatements.",
                          no_args_is_help=True)

CLOUD_OPTION = Annotated[str, typer.Option(help="cloud URL")]
KEY_FILE_OPTION = Annotated[Path, typer.Option(help="the enterprise API key, or its enterprise.json")]


class KeyFileUnusable(RuntimeError):
    """The --api-key-file holds no API key (missing, unreadable, not text, not an enterprise.json)."""


def api_key_of(path: Path) -> str:
    """The key in ``path``: the key itself, or an enterprise.json's ``api_key``; KeyFileUnusable says why not."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        key = json.loads(text).get("api_key") if text.startswith("{") else text
    except (OSError, UnicodeError, ValueError, AttributeError) as err:
        raise KeyFileUnusable(f"no API key in {path}: {getattr(err, 'strerror', None) or err}") from err
    if not isinstance(key, str) or not key or not key.isascii() or not key.isprintable():
        raise KeyFileUnusable(f"no API key in {path}: neither a key nor a JSON object with an api_key string")
    return key


def segment(value: str) -> str:
    """``value`` as one URL path segment: every reserved character escaped, and a "." or ".." segment too (a
    client normalises those away, so "../x" would reach another route)."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _location(country: str, province: str | None, grid_region: str | None) -> dict[str, str]:
    return {"country": country} | ({"province": province} if province else {}) | (
        {"grid_region": grid_region} if grid_region else {})


@factors_app.command("rule")
def rule(
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2, e.g. CN")],
    year: Annotated[int, typer.Option(help="the activity's (UTC) year")],
    province: Annotated[str | None, typer.Option(help="ISO 3166-2, e.g. CN-HE")] = None,
    grid_region: Annotated[str | None, typer.Option(help="catalogue grid region, e.g. CN-GRID-NORTH")] = None,
    on: Annotated[str | None, typer.Option(help="decision date YYYY-MM-DD (default: today, UTC)")] = None,
) -> None:
    """Print the factor the catalogue rule gives a site at that location for that year, with its source."""
    catalogue = load_catalogue()
    location = SiteLocation(country, province, grid_region)
    day = datetime.date.fromisoformat(on) if on else datetime.datetime.now(datetime.UTC).date()
    try:
        check_location(catalogue, location)
        factor = select_factor(catalogue, location, year, day)
    except (BadLocation, NoFactor) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    typer.echo(json.dumps({"catalogue_version": catalogue.version, "factor": factor_entry(factor)},
                          ensure_ascii=False))


class Refused(RuntimeError):
    """The cloud answered, but not with 201: the message names what was refused, the status and the reason."""


def created(http: httpx.Client, api_key: str, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
    """POST ``body`` with the key; the answer of a 201, else Refused naming ``what`` was refused."""
    # ASCII JSON (\\u escapes): an argument holding a lone surrogate (a non-UTF-8 byte in argv) still goes out,
    # and the cloud names why it is refused
    r = http.post(path, content=json.dumps(body, ensure_ascii=True).encode(),
                  headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    if r.status_code != 201:
        raise Refused(f"{what} refused ({r.status_code}): {r.text}")
    return r.json()  # type: ignore[no-any-return]


@contextmanager
def cloud_client(cloud: str, timeout: float) -> Iterator[httpx.Client]:
    """A client of the cloud for one command: a refusal or an unreachable cloud is a message and exit 1, never
    a traceback."""
    try:
        with httpx.Client(base_url=cloud, timeout=timeout) as http:
            yield http
    except Refused as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    except KeyFileUnusable as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except httpx.HTTPError as err:
        typer.echo(f"cannot reach the cloud at {cloud}: {err}", err=True)
        raise typer.Exit(1) from err


def add_site(http: httpx.Client, api_key: str, enterprise_id: str, site: dict[str, Any]) -> dict[str, Any]:
    return created(http, api_key, f"/api/v1/enterprises/{segment(enterprise_id)}/sites", site, "site registration")


@factors_app.command("site-add")
def site_add(
    cloud: CLOUD_OPTION,
    enterprise: Annotated[str, typer.Option(help="the enterprise id")],
    api_key_file: KEY_FILE_OPTION,
    site_id: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option()],
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2, e.g. CN")],
    province: Annotated[str | None, typer.Option(help="ISO 3166-2, e.g. CN-HE")] = None,
    grid_region: Annotated[str | None, typer.Option(help="catalogue grid region, e.g. CN-GRID-NORTH")] = None,
) -> None:
    """Register a site with its location; prints it with the factor the rule gives it."""
    site = {"site_id": site_id, "name": name, **_location(country, province, grid_region)}
    with cloud_client(cloud, timeout=30) as http:
        typer.echo(json.dumps(add_site(http, api_key_of(api_key_file), enterprise, site)))


def restate(http: httpx.Client, api_key: str, enterprise_id: str, statement: dict[str, Any] | None,
            cid: str | None) -> dict[str, Any]:
    """POST the restatement request; the answer {original_cid, restated_cid, statement}."""
    body: dict[str, Any] = {"statement": statement} if statement is not None else {"statement_cid": cid}
    return created(http, api_key, f"/api/v1/enterprises/{segment(enterprise_id)}/restatements", body, "restatement")


@factors_app.command("restate")
def restate_command(
    cloud: CLOUD_OPTION,
    enterprise: Annotated[str, typer.Option(help="the enterprise id")],
    api_key_file: KEY_FILE_OPTION,
    out: Annotated[Path, typer.Option(help="file for the restated statement (JSON)")],
    statement: Annotated[Path | None, typer.Option(help="the signed statement to restate (JSON)")] = None,
    cid: Annotated[str | None, typer.Option(help="or the CID of a statement the cloud stores")] = None,
) -> None:
    """Restate a statement with the catalogue's newer factors; writes the restated statement, prints both CIDs."""
    if (statement is None) == (cid is None):
        raise typer.BadParameter("give exactly one of --statement and --cid")
    document = None if statement is None else json.loads(statement.read_text())
    with cloud_client(cloud, timeout=120) as http:
        answer = restate(http, api_key_of(api_key_file), enterprise, document, cid)
    out.write_text(json.dumps(answer["statement"]))
    typer.echo(json.dumps({"original_cid": answer["original_cid"], "restated_cid": answer["restated_cid"],
                           "factor_changes": answer["statement"]["statement"]["restatement"]["factor_changes"]}))
