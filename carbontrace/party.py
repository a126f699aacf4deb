"""`carbontrace party …`: an enterprise's or a platform's side of the cloud, with the party's own chain key.

The key is made here and kept here (0600 in a 0700 directory); the cloud learns only its address. A binding is
the enterprise's signed request and the platform's signed confirmation (EIP-712 typed data the cloud serves,
checked by the registry contract), so the cloud cannot consent for either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from carbontrace_host.secret_files import write_secret
from cloud.chain_signer import LocalKeySigner, load_key_file, sign_typed_document, write_key_file

API = "/api/v1"

party_app = typer.Typer(help="Enterprise and platform commands, signed with the party's own chain key.",
                        no_args_is_help=True)


class PartyError(Exception):
    pass


class PartyClient:
    """The few calls a party makes; ``http`` is any httpx.Client on the cloud (a TestClient in tests)."""

    def __init__(self, http: httpx.Client, api_key: str | None = None) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{API}{path}", headers=self.headers, **kwargs)
        if response.status_code != expect:
            raise PartyError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def apply_enterprise(self, name: str, key: LocalKeySigner) -> dict[str, Any]:
        """Apply with the key's address; the answer carries the enterprise API key (shown this once), which opens
        nothing until the operator approves the application (``approve_enterprise``)."""
        return self._call("POST", "/enterprises", 201, json={"name": name, "chain_account": key.address})  # type: ignore[no-any-return]

    def approve_enterprise(self, enterprise_id: str) -> dict[str, Any]:
        """The operator's call (this client built with the operator key): registers the enterprise on chain."""
        return self._call("POST", f"/enterprises/{enterprise_id}/approve", 200)  # type: ignore[no-any-return]

    def pending_enterprises(self) -> list[dict[str, Any]]:
        return self._call("GET", "/enterprises", 200, params={"status": "pending"})  # type: ignore[no-any-return]

    def request_binding(self, enterprise_id: str, platform_id: str, key: LocalKeySigner) -> dict[str, Any]:
        document = self._call("GET", f"/enterprises/{enterprise_id}/bindings/{platform_id}/consent", 200)
        _check(document, key, "enterprise")
        body = {"platform_id": platform_id, "signature": sign_typed_document(key, document)}
        return self._call("POST", f"/enterprises/{enterprise_id}/bindings", 201, json=body)  # type: ignore[no-any-return]

    def decide_binding(
        self, platform_id: str, enterprise_id: str, key: LocalKeySigner, confirm: bool = True
    ) -> dict[str, Any]:
        action = "confirm" if confirm else "reject"
        document = self._call(
            "GET", f"/platforms/{platform_id}/bindings/{enterprise_id}/consent", 200, params={"action": action}
        )
        _check(document, key, "platform")
        body = {"signature": sign_typed_document(key, document)}
        return self._call(  # type: ignore[no-any-return]
            "POST", f"/platforms/{platform_id}/bindings/{enterprise_id}/{action}", 200, json=body
        )


def _check(document: dict[str, Any], key: LocalKeySigner, role: str) -> None:
    """Sign only a BindingConsent for this registry kind of document (never arbitrary typed data)."""
    if document.get("primaryType") != "BindingConsent" or document.get("domain", {}).get("name") != (
        "CarbonTraceRegistry"
    ):
        raise PartyError(f"the cloud served something other than a binding consent for the {role} to sign")
    del key


def new_key_file(path: Path) -> LocalKeySigner:
    if path.exists():
        raise PartyError(f"{path} exists; refusing to replace a chain key")
    key = LocalKeySigner.generate()
    write_key_file(path, key)
    return key


@party_app.command("keygen")
def keygen(out: Annotated[Path, typer.Option(help="chain key file to create (0600)")]) -> None:
    """Make a party's chain key and print its address (a platform gives this address to the operator)."""
    typer.echo(new_key_file(out).address)


@party_app.command("apply")
def apply(
    cloud: Annotated[str, typer.Option(help="cloud URL")],
    name: Annotated[str, typer.Option(help="the enterprise's name")],
    out: Annotated[Path, typer.Option(help="directory for the chain key and the API key (0700)")],
) -> None:
    """An enterprise applies: its own chain key in OUT/chain-key.hex, its API key in OUT/enterprise.json."""
    key = new_key_file(out / "chain-key.hex")
    with httpx.Client(base_url=cloud.rstrip("/"), timeout=60) as http:
        created = PartyClient(http).apply_enterprise(name, key)
    write_secret(out / "enterprise.json", json.dumps(created, indent=2) + "\n")
    typer.echo(json.dumps({"enterprise_id": created["enterprise_id"], "chain_account": key.address,
                           "status": created.get("status", "pending"),
                           "api_key_file": str(out / "enterprise.json")}))
    typer.echo("the application waits for the operator: `carbontrace party approve` (operator key)", err=True)


@party_app.command("applications")
def applications(
    cloud: Annotated[str, typer.Option(help="cloud URL")],
    operator_key_file: Annotated[Path, typer.Option(help="a file holding the operator API key")],
) -> None:
    """The operator lists the enterprise applications awaiting approval."""
    with httpx.Client(base_url=cloud.rstrip("/"), timeout=60) as http:
        typer.echo(json.dumps(PartyClient(http, _api_key(operator_key_file)).pending_enterprises()))


@party_app.command("approve")
def approve(
    cloud: Annotated[str, typer.Option(help="cloud URL")],
    enterprise: Annotated[str, typer.Option(help="the enterprise id of the application")],
    operator_key_file: Annotated[Path, typer.Option(help="a file holding the operator API key")],
) -> None:
    """The operator approves an application: the enterprise is registered on chain (the operator's transaction)
    and its API key starts to work."""
    with httpx.Client(base_url=cloud.rstrip("/"), timeout=60) as http:
        typer.echo(json.dumps(PartyClient(http, _api_key(operator_key_file)).approve_enterprise(enterprise)))


@party_app.command("request-binding")
def request_binding(
    cloud: Annotated[str, typer.Option()],
    enterprise: Annotated[str, typer.Option()],
    platform: Annotated[str, typer.Option()],
    api_key_file: Annotated[Path, typer.Option(help="the enterprise API key, or its enterprise.json")],
    chain_key: Annotated[Path, typer.Option(help="the enterprise's chain key file")],
) -> None:
    """The enterprise signs and sends its binding request."""
    with httpx.Client(base_url=cloud.rstrip("/"), timeout=60) as http:
        state = PartyClient(http, _api_key(api_key_file)).request_binding(enterprise, platform,
                                                                           load_key_file(chain_key))
    typer.echo(json.dumps(state))


@party_app.command("decide-binding")
def decide_binding(
    cloud: Annotated[str, typer.Option()],
    platform: Annotated[str, typer.Option()],
    enterprise: Annotated[str, typer.Option()],
    api_key_file: Annotated[Path, typer.Option(help="a file holding the platform API key")],
    chain_key: Annotated[Path, typer.Option(help="the platform's chain key file")],
    reject: Annotated[bool, typer.Option(help="reject instead of confirm")] = False,
) -> None:
    """The platform signs and sends its confirmation (or rejection)."""
    with httpx.Client(base_url=cloud.rstrip("/"), timeout=60) as http:
        state = PartyClient(http, _api_key(api_key_file)).decide_binding(platform, enterprise,
                                                                          load_key_file(chain_key), not reject)
    typer.echo(json.dumps(state))


def _api_key(path: Path) -> str:
    text = path.read_text().strip()
    if text.startswith("{"):
        return str(json.loads(text)["api_key"])
    return text
