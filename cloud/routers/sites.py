"""Sites, gateways and devices of an enterprise. Every device and gateway key registration and revocation is
also a transaction on the chain (fingerprint = sha256 of the SEC1 key), so the registry is tamper-evident."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from carbontrace_protocol.emission_factors import get_factor
from cloud import models
from cloud.chain import TxResult, key_fingerprint
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.ledger import Ledger
from cloud.ledger_chain import chain_id_of
from cloud.schemas import (
    DeviceCreate,
    DeviceRead,
    GatewayCreate,
    GatewayCreated,
    GatewayRead,
    SiteCreate,
    SiteRead,
)
from cloud.security import Principal, Role, issue_key, revoke_gateway_keys

router = APIRouter(prefix="/api/v1", tags=["sites"])

_MANAGERS = (Role.ENTERPRISE, Role.SITE_ENGINEER)
_READERS = (Role.OPERATOR, Role.REGULATOR, Role.ENTERPRISE, Role.SITE_ENGINEER)


def site_in_scope(session: Session, principal: Principal, site_id: str) -> models.Site:
    """The site if the caller may see it; 403 otherwise, also when it does not exist (no probing)."""
    site = session.get(models.Site, site_id)
    if principal.role in (Role.OPERATOR, Role.REGULATOR):
        if site is None:
            raise HTTPException(404, "no such site")
        return site
    if site is None or principal.enterprise_id is None or site.enterprise_id != principal.enterprise_id:
        raise forbidden()
    return site


def _site_read(site: models.Site) -> SiteRead:
    return SiteRead(
        site_id=site.id, enterprise_id=site.enterprise_id, name=site.name, emission_factor=site.emission_factor
    )


def _device_read(device: models.Device) -> DeviceRead:
    return DeviceRead(
        device_id=device.id,
        site_id=device.site_id,
        public_key=device.public_key.hex(),
        status=device.status,
        key_fingerprint=key_fingerprint(device.public_key).hex(),
        registered_tx=device.registered_tx,
        revoked_tx=device.revoked_tx,
    )


@router.post("/enterprises/{enterprise_id}/sites", status_code=201, response_model=SiteRead)
def create_site(
    enterprise_id: str,
    body: SiteCreate,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(Role.ENTERPRISE))],
) -> SiteRead:
    """Roles: the enterprise itself. Site ids are global; the emission factor defaults to the table's default."""
    if principal.enterprise_id != enterprise_id:
        raise forbidden()
    try:
        factor = get_factor(body.emission_factor)
    except KeyError as err:
        raise HTTPException(422, "unknown emission factor") from err
    with ledger.session_factory.begin() as session:
        if session.get(models.Site, body.site_id) is not None:
            raise HTTPException(409, "site id taken")
        site = models.Site(
            id=body.site_id,
            enterprise_id=enterprise_id,
            name=body.name,
            emission_factor=factor.id,
            created_at=int(time.time()),
        )
        session.add(site)
    return _site_read(site)


@router.get("/enterprises/{enterprise_id}/sites", response_model=list[SiteRead])
def list_sites(
    enterprise_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require(*_READERS))]
) -> list[SiteRead]:
    """Roles: operator, regulator, the enterprise and its site engineers."""
    if principal.role in _MANAGERS and principal.enterprise_id != enterprise_id:
        raise forbidden()
    rows = session.scalars(
        select(models.Site).where(models.Site.enterprise_id == enterprise_id).order_by(models.Site.id)
    )
    return [_site_read(s) for s in rows]


# Devices and gateways are both signers: a key under an enterprise's site, registered and revoked on chain first.
SignerRow = TypeVar("SignerRow", models.Device, models.Gateway)
ChainKeyCall = Callable[[bytes, bytes, bytes], TxResult]  # (enterprise, signer, fingerprint) -> transaction


def _enterprise_of_new_signer(
    ledger: Ledger, principal: Principal, site_id: str, model: type[SignerRow], signer_id: str, what: str
) -> str:
    """The enterprise a new device or gateway of ``site_id`` registers under; 409 if its id is taken."""
    with ledger.read_session_factory() as session:
        site = site_in_scope(session, principal, site_id)
        if session.get(model, signer_id) is not None:
            raise HTTPException(409, f"{what} id taken")
        return site.enterprise_id


def _revoke_signer(
    ledger: Ledger,
    principal: Principal,
    model: type[SignerRow],
    signer_id: str,
    what: str,
    revoke_on_chain: ChainKeyCall,
    also: Callable[[Session], None] | None = None,
) -> SignerRow:
    """Revoke a device's or gateway's key on chain, then mark it revoked here (``also`` runs in that transaction)."""
    with ledger.read_session_factory() as session:
        signer = session.get(model, signer_id)
        if signer is None:
            raise forbidden()
        site = site_in_scope(session, principal, signer.site_id)
        if signer.status != "active":
            raise HTTPException(409, f"{what} already revoked")
        public_key = signer.public_key
    result = revoke_on_chain(chain_id_of(site.enterprise_id), chain_id_of(signer_id), key_fingerprint(public_key))
    with ledger.session_factory.begin() as session:
        row = session.get(model, signer_id)
        assert row is not None
        row.status = "revoked"
        row.revoked_tx = "0x" + result.tx_hash.hex()
        if also is not None:
            also(session)
    return row


def _gateway_read(gateway: models.Gateway) -> GatewayRead:
    return GatewayRead(
        gateway_id=gateway.id,
        site_id=gateway.site_id,
        public_key=gateway.public_key.hex(),
        key_fingerprint=key_fingerprint(gateway.public_key).hex(),
        status=gateway.status,
        registered_tx=gateway.registered_tx,
        revoked_tx=gateway.revoked_tx,
    )


@router.post("/sites/{site_id}/gateways", status_code=201, response_model=GatewayCreated)
def register_gateway(
    site_id: str,
    body: GatewayCreate,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(*_MANAGERS))],
) -> GatewayCreated:
    """Roles: the site's enterprise and its site engineers. Registers the gateway key on chain, then here;
    returns the gateway's API key (shown once)."""
    public_key = bytes.fromhex(body.public_key)
    enterprise_id = _enterprise_of_new_signer(ledger, principal, site_id, models.Gateway, body.gateway_id, "gateway")
    # Chain first, as for devices: a verifier trusts a batch signature only under a key the chain lists.
    result = ledger.chain.registry().register_gateway_key(
        chain_id_of(enterprise_id), chain_id_of(body.gateway_id), key_fingerprint(public_key)
    )
    now = int(time.time())
    with ledger.session_factory.begin() as session:
        gateway = models.Gateway(
            id=body.gateway_id,
            site_id=site_id,
            public_key=public_key,
            status="active",
            registered_tx="0x" + result.tx_hash.hex(),
            created_at=now,
        )
        session.add(gateway)
        session.flush()
        key = issue_key(session, Role.GATEWAY, now, enterprise_id=enterprise_id, gateway_id=body.gateway_id)
        created = GatewayCreated(**_gateway_read(gateway).model_dump(), api_key=key)
    return created


@router.post("/gateways/{gateway_id}/revoke", response_model=GatewayRead)
def revoke_gateway(
    gateway_id: str, ledger: LedgerDep, principal: Annotated[Principal, Depends(require(*_MANAGERS))]
) -> GatewayRead:
    """Roles: the gateway's enterprise and its site engineers. Revokes the gateway key on chain and its API
    keys here: its uploads are refused from then on. A replacement is registered under a new gateway id."""
    gateway = _revoke_signer(
        ledger,
        principal,
        models.Gateway,
        gateway_id,
        "gateway",
        ledger.chain.registry().revoke_gateway_key,
        also=lambda session: revoke_gateway_keys(session, gateway_id),
    )
    return _gateway_read(gateway)


@router.post("/sites/{site_id}/devices", status_code=201, response_model=DeviceRead)
def register_device(
    site_id: str,
    body: DeviceCreate,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(*_MANAGERS))],
) -> DeviceRead:
    """Roles: the site's enterprise and its site engineers. Registers the device key on chain, then here."""
    public_key = bytes.fromhex(body.public_key)
    enterprise_id = _enterprise_of_new_signer(ledger, principal, site_id, models.Device, body.device_id, "device")
    # Chain first: a device is usable only once its key is on chain. If the DB write then fails, the
    # registration is retried and the chain answers KeyAlreadyRegistered (409): the operator reconciles.
    result = ledger.chain.registry().register_device_key(
        chain_id_of(enterprise_id), chain_id_of(body.device_id), key_fingerprint(public_key)
    )
    with ledger.session_factory.begin() as session:
        device = models.Device(
            id=body.device_id,
            site_id=site_id,
            public_key=public_key,
            status="active",
            registered_tx="0x" + result.tx_hash.hex(),
            created_at=int(time.time()),
        )
        session.add(device)
    return _device_read(device)


@router.post("/devices/{device_id}/revoke", response_model=DeviceRead)
def revoke_device(
    device_id: str, ledger: LedgerDep, principal: Annotated[Principal, Depends(require(*_MANAGERS))]
) -> DeviceRead:
    """Roles: the device's enterprise and its site engineers. Revokes the key on chain; its readings are refused."""
    device = _revoke_signer(
        ledger, principal, models.Device, device_id, "device", ledger.chain.registry().revoke_device_key
    )
    return _device_read(device)


@router.get("/devices/{device_id}", response_model=DeviceRead)
def read_device(
    device_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require(*_READERS))]
) -> DeviceRead:
    """Roles: operator, regulator, the device's enterprise and its site engineers."""
    device = session.get(models.Device, device_id)
    if device is None:
        if principal.role in (Role.OPERATOR, Role.REGULATOR):
            raise HTTPException(404, "no such device")
        raise forbidden()
    site_in_scope(session, principal, device.site_id)
    return _device_read(device)
