"""A real cloud for the console's browser tests: the FastAPI app under uvicorn on a loopback port (thread),
populated through its own HTTP API with real signed batches (tests/cloud/cloud_testkit.py builders), anchored
on the embedded chain, plus Chromium (Debian's, driven by Playwright; never a downloaded browser).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cloud.app import create_app
from cloud.ledger import Ledger
from tests.cloud.cloud_testkit import (
    ADMIN_KEY,
    GatewayKit,
    Tenant,
    auth,
    decide_binding,
    make_settings,
    register_platform,
    register_tenant,
    request_binding,
    served_over_http,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass
class ConsoleCloud:
    """The running app, its ledger (same process), an HTTP client onto it and the tenants it holds."""

    url: str
    ledger: Ledger
    http: httpx.Client
    tenants: dict[str, Tenant] = field(default_factory=dict)
    platform_id: str = ""
    platform_key: str = ""
    regulator_key: str = ""

    def upload(self, gateway: GatewayKit, per_device: int = 3, skip_seq: int = 0) -> dict[str, Any]:
        """Build, upload and accept the gateway's next batch; ``skip_seq`` leaves a hole in every device's sequence."""
        for device in gateway.devices:
            device.next_seq += skip_seq
        batch, readings = gateway.build(per_device=per_device)
        r = self.http.post(
            "/api/v1/batches",
            content=batch.encode(),
            headers={"Content-Type": "application/cbor", **auth(gateway.api_key)},
        )
        assert r.status_code == 201, r.text
        gateway.accepted(batch, readings)
        return dict(r.json())

    def anchor(self) -> int:
        report = self.ledger.anchorer.tick(force_checkpoint=True)
        assert report.anchored >= 1, report
        return int(report.anchored)


def populate(cloud: ConsoleCloud) -> None:
    """Two enterprises (Acme: two devices, four batches, a sequence gap; Globex: one device), a platform
    Acme is bound to, a regulator, everything but Acme's newest batch anchored on chain."""
    http = cloud.http
    acme = register_tenant(http, "Acme Foods", devices=2)  # type: ignore[arg-type]  # httpx.Client posts alike
    globex = register_tenant(http, "Globex Metals", devices=1)  # type: ignore[arg-type]
    cloud.tenants = {"acme": acme, "globex": globex}
    cloud.platform_id, cloud.platform_key, platform_chain_key = register_platform(http, "GreenX Exchange")  # type: ignore[arg-type]
    r = request_binding(http, acme.enterprise_id, acme.enterprise_key, acme.chain_key, cloud.platform_id)  # type: ignore[arg-type]
    assert r.status_code == 201, r.text
    r = decide_binding(http, cloud.platform_id, cloud.platform_key, platform_chain_key, acme.enterprise_id)  # type: ignore[arg-type]
    assert r.status_code == 200 and r.json()["state"] == "bound", r.text
    r = http.post("/api/v1/regulators", json={"label": "EPA desk"}, headers=auth(ADMIN_KEY))
    cloud.regulator_key = r.json()["api_key"]
    for n in range(3):
        cloud.upload(acme.gateway, per_device=3 + n, skip_seq=2 if n == 2 else 0)
        cloud.upload(globex.gateway, per_device=2)
    cloud.anchor()
    cloud.upload(acme.gateway)  # stays pending until the next anchor


@contextmanager
def console_cloud(tmp: Path) -> Iterator[ConsoleCloud]:
    settings = make_settings(tmp)
    app = create_app(settings)
    with served_over_http(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        cloud = ConsoleCloud(url, app.state.ledger, http)
        populate(cloud)
        yield cloud


def tamper_reading_row(ledger: Ledger, batch_id: str, leaf_index: int) -> None:
    """Change one stored reading row (the measurements it claims) behind the API's back, as a bad DB edit would."""
    from sqlalchemy import update

    from carbontrace_protocol.measures import FIELD_BITS
    from cloud import models

    with ledger.session_factory.begin() as session:
        result = session.execute(
            update(models.Reading)
            .where(models.Reading.batch_id == batch_id, models.Reading.leaf_index == leaf_index)
            .values(measures=models.Reading.measures + (1 << len(FIELD_BITS)))  # a bit no field has
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


def tamper_blob(ledger: Ledger, cid: str) -> None:
    """Flip one byte of a batch blob in the local content store."""
    path = Path(ledger.settings.content_dir) / cid[-2:] / cid
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
