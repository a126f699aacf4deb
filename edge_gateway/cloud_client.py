"""The gateway's side of the cloud HTTP API (httpx). Thin: status codes in, plain data out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from carbontrace_protocol.errors import GATEWAY_REVOKED
from edge_gateway.classify import ACTIVE, REVOKED, DeviceEntry


class CloudUnavailable(Exception):
    """Network error, timeout or a 5xx: try again later."""


class CloudRefused(Exception):
    """The cloud answered with an error that retrying will not fix (401/403/413/other 4xx)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class UploadResult:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Registry:
    gateway_id: str
    site_id: str
    emission_factor: str | None
    devices: list[DeviceEntry]


def parse_registry(body: dict[str, Any]) -> Registry:
    devices = []
    for entry in body["devices"]:
        key = bytes.fromhex(str(entry["public_key"]))
        status = str(entry.get("status", ACTIVE))
        if len(key) != 65 or key[0] != 4 or status not in (ACTIVE, REVOKED):
            raise ValueError(f"bad registry entry for {entry.get('device_id')!r}")
        devices.append(DeviceEntry(str(entry["device_id"]), key, status))
    factor = body.get("emission_factor")
    return Registry(str(body["gateway_id"]), str(body["site_id"]), str(factor) if factor else None, devices)


class CloudClient:
    def __init__(self, base_url: str, gateway_id: str, api_key: str, timeout_s: float) -> None:
        self.gateway_id = gateway_id
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise CloudUnavailable(f"{method} {path}: {type(err).__name__}: {err}") from err
        if response.status_code >= 500 or response.status_code == 429:
            raise CloudUnavailable(f"{method} {path}: HTTP {response.status_code}")
        return response

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {"detail": response.text[:300]}
        return body if isinstance(body, dict) else {"detail": body}

    def upload(self, blob: bytes) -> UploadResult:
        """POST a batch: 200/201 receipts, 409 and 422 come back as results; other 4xx raise CloudRefused."""
        response = self._request(
            "POST", "/api/v1/batches", content=blob, headers={"Content-Type": "application/cbor"}
        )
        if response.status_code in (200, 201, 409, 422):
            return UploadResult(response.status_code, self._json(response))
        if response.status_code == 401 and self._json(response).get("detail") == GATEWAY_REVOKED:
            # Decommissioned in the cloud: the key never works again, so this is a halt for a human, not a retry.
            return UploadResult(401, {"error": GATEWAY_REVOKED,
                                      "detail": "the cloud revoked this gateway and its API keys"})
        raise CloudRefused(response.status_code, response.text)

    def state(self) -> tuple[int | None, bytes | None]:
        response = self._request("GET", f"/api/v1/gateways/{self.gateway_id}/state")
        if response.status_code != 200:
            raise CloudRefused(response.status_code, response.text)
        body = self._json(response)
        seq = body.get("last_batch_seq")
        digest = body.get("last_batch_hash")
        return (int(seq) if seq is not None else None, bytes.fromhex(digest) if digest else None)

    def devices(self) -> Registry:
        response = self._request("GET", f"/api/v1/gateways/{self.gateway_id}/devices")
        if response.status_code != 200:
            raise CloudRefused(response.status_code, response.text)
        return parse_registry(self._json(response))

    def report_health(self, report: dict[str, Any]) -> None:
        """POST the health report (edge_gateway/health.py); any answer but 200 raises CloudRefused."""
        response = self._request("POST", f"/api/v1/gateways/{self.gateway_id}/health", json=report)
        if response.status_code != 200:
            raise CloudRefused(response.status_code, response.text)
