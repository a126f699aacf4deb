"""What a gateway reads: its site's device registry (cached locally) and its last accepted batch (resync)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select

from cloud import models
from cloud.deps import SessionDep, forbidden, require
from cloud.ingest import last_batch
from cloud.schemas import GatewayRegistry, GatewayState, RegistryDevice
from cloud.security import Principal, Role
from cloud.site_factors import current_factor

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


def _own_gateway(session: SessionDep, principal: Principal, gateway_id: str) -> models.Gateway:
    if principal.gateway_id != gateway_id:
        raise forbidden()
    gateway = session.get(models.Gateway, gateway_id)
    if gateway is None:
        raise forbidden()
    return gateway


@router.get("/{gateway_id}/devices", response_model=GatewayRegistry)
def gateway_devices(
    gateway_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require(Role.GATEWAY))]
) -> GatewayRegistry:
    """Roles: that gateway. The devices of its site (active and revoked) and the site's emission factor."""
    gateway = _own_gateway(session, principal, gateway_id)
    site = session.get(models.Site, gateway.site_id)
    assert site is not None
    devices = session.scalars(select(models.Device).where(models.Device.site_id == site.id).order_by(models.Device.id))
    return GatewayRegistry(
        gateway_id=gateway.id,
        site_id=site.id,
        emission_factor=current_factor(site).id,  # the catalogue rule's, for energy used now
        devices=[RegistryDevice(device_id=d.id, public_key=d.public_key.hex(), status=d.status) for d in devices],
    )


@router.get("/{gateway_id}/state", response_model=GatewayState)
def gateway_state(
    gateway_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require(Role.GATEWAY))]
) -> GatewayState:
    """Roles: that gateway. Its last accepted batch, so a gateway that lost its state can resync."""
    _own_gateway(session, principal, gateway_id)
    last = last_batch(session, gateway_id)
    if last is None:
        return GatewayState(last_batch_seq=None, last_batch_hash=None)
    return GatewayState(last_batch_seq=last[0], last_batch_hash=last[1].hex())
