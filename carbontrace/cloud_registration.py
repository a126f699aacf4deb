"""The few cloud calls provisioning needs (cloud/routers/sites.py): register or rotate a device or gateway key.

Auth: ``Authorization: Bearer <api key>`` of the site's enterprise or one of its site engineers.
"""

from __future__ import annotations

from typing import Any

import httpx

API = "/api/v1"


class RegistrationError(Exception):
    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error") or body)
    return str(body)


class RegistrationClient:
    def __init__(
        self, cloud_url: str, api_key: str, timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=cloud_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistrationClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def register_device(self, site_id: str, device_id: str, public_key: bytes) -> dict[str, Any]:
        """The cloud's device record. Re-registering the same key is accepted (returns the existing record);
        the same id with another key is an error (409): changing a live device's key is a rotation
        (``rotate_device_key``, ``carbontrace provision device --rotate``)."""
        response = self._http.post(
            f"{API}/sites/{site_id}/devices", json={"device_id": device_id, "public_key": public_key.hex()}
        )
        if response.status_code == 409:
            existing = self._http.get(f"{API}/devices/{device_id}")
            if existing.status_code == 200 and existing.json().get("public_key") == public_key.hex():
                record: dict[str, Any] = existing.json()
                record["already_registered"] = True
                return record
        if response.status_code != 201:
            raise RegistrationError(f"register device {device_id}", response.status_code, _detail(response))
        created: dict[str, Any] = response.json()
        return created

    def register_gateway(self, site_id: str, gateway_id: str, public_key: bytes) -> dict[str, Any]:
        """``{"gateway_id", "site_id", "api_key"}``; the API key is shown only this once."""
        response = self._http.post(
            f"{API}/sites/{site_id}/gateways", json={"gateway_id": gateway_id, "public_key": public_key.hex()}
        )
        if response.status_code != 201:
            raise RegistrationError(f"register gateway {gateway_id}", response.status_code, _detail(response))
        created: dict[str, Any] = response.json()
        if not isinstance(created.get("api_key"), str):
            raise RegistrationError(f"register gateway {gateway_id}", response.status_code, "no api_key in answer")
        return created

    def rotate_device_key(self, device_id: str, public_key: bytes) -> dict[str, Any]:
        """The device record after the rotation (with its key history); ``already_current`` is True when the
        cloud had this key as the current one already (a repeated rotation: nothing changed)."""
        return self._rotate(f"devices/{device_id}", f"rotate the key of device {device_id}", public_key)

    def rotate_gateway_key(self, gateway_id: str, public_key: bytes) -> dict[str, Any]:
        """The gateway record after the rotation; its API key is unchanged (and not in the answer)."""
        return self._rotate(f"gateways/{gateway_id}", f"rotate the key of gateway {gateway_id}", public_key)

    def _rotate(self, signer_path: str, what: str, public_key: bytes) -> dict[str, Any]:
        response = self._http.post(f"{API}/{signer_path}/keys", json={"public_key": public_key.hex()})
        if response.status_code not in (200, 201):
            raise RegistrationError(what, response.status_code, _detail(response))
        record: dict[str, Any] = response.json()
        record["already_current"] = response.status_code == 200
        return record
