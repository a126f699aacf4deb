"""Sites, gateways and devices of an enterprise. Every device and gateway key registration, rotation and
revocation is also a transaction on the chain (fingerprint = sha256 of the SEC1 key), so the registry is
tamper-evident; every key a signer ever had stays in the key history (cloud/signer_keys.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from carbontrace_protocol.emission_factors import load_catalogue
from carbontrace_protocol.factor_rule import (
    BadLocation,
    NoFactor,
    SiteLocation,
    activity_year,
    check_location,
    select_factor,
)
from carbontrace_protocol.ids import chain_id_of, key_fingerprint
from cloud import access_scope, models
from cloud.chain import ContractReverted, KeyEvent, TxResult
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.ledger import Ledger
from cloud.schemas import (
    DeviceCreate,
    DeviceRead,
    GatewayCreate,
    GatewayCreated,
    GatewayRead,
    KeyRotate,
    SignerKeyRead,
    SiteCreate,
    SiteRead,
)
from cloud.security import Principal, Role, issue_key, revoke_gateway_keys
from cloud.signer_keys import (
    DEVICE,
    GATEWAY,
    SignerKindName,
    key_by_fingerprint,
    keys_of,
    record_registration,
    record_revocation,
)
from cloud.site_factors import current_factor, today

router = APIRouter(prefix="/api/v1", tags=["sites"])

_MANAGERS = (Role.ENTERPRISE, Role.SITE_ENGINEER)
_READERS = access_scope.roles_for(access_scope.Surface.SITE_RECORD)


def site_in_scope(session: Session, principal: Principal, site_id: str) -> models.Site:
    """The site if the caller may see it (cloud/access_scope.py SITE_RECORD); 403 otherwise, also when it does
    not exist (no probing), except to a caller who may see every tenant's (404)."""
    site = session.get(models.Site, site_id)
    surface = access_scope.Surface.SITE_RECORD
    if site is None:
        if access_scope.surface_scope(principal, surface) == access_scope.TenantScope.ANY:
            raise HTTPException(404, "no such site")
        raise forbidden()
    if not access_scope.may_see_own_or_any(principal, surface, site.enterprise_id):
        raise forbidden()
    return site


def _site_read(site: models.Site) -> SiteRead:
    return SiteRead(
        site_id=site.id,
        enterprise_id=site.enterprise_id,
        name=site.name,
        country=site.country,
        province=site.province,
        grid_region=site.grid_region,
        emission_factor=current_factor(site).id,
    )


@router.post("/enterprises/{enterprise_id}/sites", status_code=201, response_model=SiteRead)
def create_site(
    enterprise_id: str,
    body: SiteCreate,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(Role.ENTERPRISE))],
) -> SiteRead:
    """Roles: the enterprise itself. Site ids are global. The site's location (country, province, grid region)
    decides its emission factor by the catalogue rule; 422 when the location is not in the catalogue, has no
    factor, or ``emission_factor`` is given and is not the rule's answer."""
    if principal.enterprise_id != enterprise_id:
        raise forbidden()
    location = SiteLocation(body.country, body.province, body.grid_region)
    catalogue = load_catalogue()
    try:
        check_location(catalogue, location)
        factor = select_factor(catalogue, location, activity_year(int(time.time())), today())
    except (BadLocation, NoFactor) as err:
        raise HTTPException(422, str(err)) from err
    if body.emission_factor is not None and body.emission_factor != factor.id:
        raise HTTPException(
            422,
            f"emission factor {body.emission_factor!r} is not the one the catalogue rule gives a site at "
            f"{location.describe()} ({factor.id}); a site's factor follows from its location",
        )
    with ledger.session_factory.begin() as session:
        if session.get(models.Site, body.site_id) is not None:
            raise HTTPException(409, "site id taken")
        site = models.Site(
            id=body.site_id,
            enterprise_id=enterprise_id,
            name=body.name,
            emission_factor=factor.id,
            country=location.country,
            province=location.province,
            grid_region=location.grid_region,
            created_at=int(time.time()),
        )
        session.add(site)
    return _site_read(site)


@router.get("/enterprises/{enterprise_id}/sites", response_model=list[SiteRead])
def list_sites(
    enterprise_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require(*_READERS))]
) -> list[SiteRead]:
    """Roles: operator, regulator, the enterprise and its site engineers."""
    if not access_scope.may_see_own_or_any(principal, access_scope.Surface.SITE_RECORD, enterprise_id):
        raise forbidden()
    rows = session.scalars(
        select(models.Site).where(models.Site.enterprise_id == enterprise_id).order_by(models.Site.id)
    )
    return [_site_read(s) for s in rows]


# Devices and gateways are both signers: a key under an enterprise's site, registered and revoked on chain first,
# with every key they ever had kept in the history (cloud/signer_keys.py).
#
# Two ways to change a signer's keys:
# - rotation (POST …/keys): the signer lives on under the same id with a new key; the old key is revoked on
#   chain in the same request. This is also the answer to a compromised key of a signer that stays in service.
# - revocation (POST …/revoke): the signer is decommissioned. It is never rotated again (409); a replacement
#   is registered under a new id. No extra "compromised" flag is needed: a revoked key is refused either way.
SignerRow = TypeVar("SignerRow", models.Device, models.Gateway)
ChainKeyCall = Callable[[bytes, bytes, bytes], TxResult]  # (enterprise, signer, fingerprint) -> transaction


@dataclass(frozen=True)
class SignerChain:
    """The registry calls for one kind of signer; ``events`` lists one signer's key events in chain order."""

    register: ChainKeyCall
    revoke: ChainKeyCall
    events: Callable[[bytes], list[KeyEvent]]


def _device_chain(ledger: Ledger) -> SignerChain:
    registry = ledger.chain.registry()
    return SignerChain(
        registry.register_device_key,
        registry.revoke_device_key,
        lambda signer: registry.device_key_events(device_id=signer),
    )


def _gateway_chain(ledger: Ledger) -> SignerChain:
    registry = ledger.chain.registry()
    return SignerChain(
        registry.register_gateway_key,
        registry.revoke_gateway_key,
        lambda signer: registry.gateway_key_events(gateway_id=signer),
    )


def _tx(result: TxResult) -> str:
    return "0x" + result.tx_hash.hex()


def _history(session: Session, kind: SignerKindName, signer_id: str) -> list[SignerKeyRead]:
    return [
        SignerKeyRead(
            fingerprint=key.fingerprint.hex(),
            public_key=key.public_key.hex(),
            registered_at=key.registered_at,
            register_tx=key.register_tx,
            revoked_at=key.revoked_at,
            revoke_tx=key.revoke_tx,
        )
        for key in keys_of(session, kind, signer_id)
    ]


def _device_read(device: models.Device, keys: list[SignerKeyRead]) -> DeviceRead:
    return DeviceRead(
        device_id=device.id,
        site_id=device.site_id,
        public_key=device.public_key.hex(),
        status=device.status,
        key_fingerprint=key_fingerprint(device.public_key).hex(),
        registered_tx=device.registered_tx,
        revoked_tx=device.revoked_tx,
        keys=keys,
    )


def _gateway_read(gateway: models.Gateway, keys: list[SignerKeyRead]) -> GatewayRead:
    return GatewayRead(
        gateway_id=gateway.id,
        site_id=gateway.site_id,
        public_key=gateway.public_key.hex(),
        key_fingerprint=key_fingerprint(gateway.public_key).hex(),
        status=gateway.status,
        registered_tx=gateway.registered_tx,
        revoked_tx=gateway.revoked_tx,
        keys=keys,
    )


def _refuse_used_key(session: Session, public_key: bytes) -> None:
    """409 if any device or gateway ever had this key: a fingerprint is registered once, ever (as on chain)."""
    if key_by_fingerprint(session, key_fingerprint(public_key)) is not None:
        raise HTTPException(409, "this key was registered before (by this or another signer); make a new key")


def _enterprise_of_new_signer(
    ledger: Ledger,
    principal: Principal,
    site_id: str,
    model: type[SignerRow],
    signer_id: str,
    public_key: bytes,
    what: str,
) -> str:
    """The enterprise a new device or gateway of ``site_id`` registers under; 409 if its id or key is taken."""
    with ledger.read_session_factory() as session:
        site = site_in_scope(session, principal, site_id)
        if session.get(model, signer_id) is not None:
            raise HTTPException(409, f"{what} id taken")
        _refuse_used_key(session, public_key)
        return site.enterprise_id


def _signer_in_scope(session: Session, principal: Principal, model: type[SignerRow], signer_id: str) -> SignerRow:
    """The signer and, through site_in_scope, the caller's right to it; 403 also when it does not exist."""
    signer = session.get(model, signer_id)
    if signer is None:
        raise forbidden()
    site_in_scope(session, principal, signer.site_id)
    return signer


def _revoke_signer(
    ledger: Ledger,
    principal: Principal,
    model: type[SignerRow],
    kind: SignerKindName,
    signer_id: str,
    revoke_on_chain: ChainKeyCall,
    also: Callable[[Session], None] | None = None,
) -> tuple[SignerRow, list[SignerKeyRead]]:
    """Revoke a device's or gateway's key on chain, then mark it (and its history row) revoked here; ``also``
    runs in that transaction. Returns the row and its key history."""
    with ledger.read_session_factory() as session:
        signer = _signer_in_scope(session, principal, model, signer_id)
        if signer.status != "active":
            raise HTTPException(409, f"{kind} already revoked")
        site = session.get(models.Site, signer.site_id)
        assert site is not None
        public_key = signer.public_key
    fingerprint = key_fingerprint(public_key)
    revoke_tx = _tx(revoke_on_chain(chain_id_of(site.enterprise_id), chain_id_of(signer_id), fingerprint))
    with ledger.session_factory.begin() as session:
        row = session.get(model, signer_id)
        assert row is not None
        row.status = "revoked"
        row.revoked_tx = revoke_tx
        record_revocation(session, fingerprint, revoke_tx, int(time.time()))
        if also is not None:
            also(session)
        return row, _history(session, kind, signer_id)


def _last_event(events: list[KeyEvent], kind: str, fingerprint: bytes) -> KeyEvent | None:
    matching = [event for event in events if event.kind == kind and event.key_fingerprint == fingerprint]
    return matching[-1] if matching else None


def _revoke_unless_done(chain: SignerChain, enterprise: bytes, signer: bytes, fingerprint: bytes) -> str:
    """Revoke the signer's old key on chain; if an earlier attempt of this rotation already did (the chain
    answers KeyNotActive and lists the revocation for this signer), its transaction."""
    try:
        return _tx(chain.revoke(enterprise, signer, fingerprint))
    except ContractReverted as err:
        done = _last_event(chain.events(signer), "revoked", fingerprint) if err.error_name == "KeyNotActive" else None
        if done is None:
            raise
        return "0x" + done.tx_hash.hex()


def _register_unless_done(chain: SignerChain, enterprise: bytes, signer: bytes, fingerprint: bytes) -> str:
    """Register the new key for the signer on chain; if an earlier attempt of this rotation already did (the
    chain lists it as registered for this very signer and not revoked since), its transaction."""
    try:
        return _tx(chain.register(enterprise, signer, fingerprint))
    except ContractReverted as err:
        if err.error_name not in ("SignerHasActiveKey", "KeyAlreadyRegistered"):
            raise
        events = chain.events(signer)
        done = _last_event(events, "registered", fingerprint)
        if done is None or _last_event(events, "revoked", fingerprint) is not None:
            raise  # another key is active for this signer, or this key is someone else's: 409 with the reason
        return "0x" + done.tx_hash.hex()


def _rotate_signer_key(
    ledger: Ledger,
    principal: Principal,
    model: type[SignerRow],
    kind: SignerKindName,
    signer_id: str,
    public_key: bytes,
    chain: SignerChain,
) -> tuple[SignerRow, list[SignerKeyRead], bool]:
    """Replace a live signer's key under the same id: revoke the old key on chain, register the new one, then
    the database (the row's current key and the history) in one transaction. Returns (row, history, rotated):
    ``rotated`` is False when ``public_key`` already is the current key (a retried request whose answer was
    lost), which changes nothing.

    Safe to retry after any failure: a retry finds the old key revoked (and maybe the new one registered) on
    chain by the earlier attempt and only does what is left, taking the earlier transactions from the chain's
    key events. Until the database write, ingestion keeps accepting the old key (the database is its registry).
    """
    with ledger.read_session_factory() as session:
        signer = _signer_in_scope(session, principal, model, signer_id)
        if signer.status != "active":
            raise HTTPException(
                409, f"{kind} {signer_id} is revoked (decommissioned) and cannot get a new key; register a new id"
            )
        if signer.public_key == public_key:
            return signer, _history(session, kind, signer_id), False
        if signer.registered_tx is None:
            raise HTTPException(
                409, f"the {kind}'s current key is not on chain yet: run `cloud register-gateway-keys` first"
            )
        _refuse_used_key(session, public_key)
        site = session.get(models.Site, signer.site_id)
        assert site is not None
        old_key = signer.public_key
    enterprise, signer_chain_id = chain_id_of(site.enterprise_id), chain_id_of(signer_id)
    old_fingerprint = key_fingerprint(old_key)
    # Revoke first: the contract allows one active key per signer, and a key that may be compromised
    # should stop counting as early as possible.
    revoke_tx = _revoke_unless_done(chain, enterprise, signer_chain_id, old_fingerprint)
    register_tx = _register_unless_done(chain, enterprise, signer_chain_id, key_fingerprint(public_key))
    now = int(time.time())
    with ledger.session_factory.begin() as session:
        row = session.get(model, signer_id, with_for_update=True)
        assert row is not None
        if row.status != "active" or row.public_key != old_key:
            raise HTTPException(409, f"the {kind} changed during the rotation (revoked or rotated); read it again")
        record_revocation(session, old_fingerprint, revoke_tx, now)
        record_registration(session, kind, signer_id, public_key, register_tx, now)
        row.public_key = public_key
        row.registered_tx = register_tx
        return row, _history(session, kind, signer_id), True


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
    enterprise_id = _enterprise_of_new_signer(
        ledger, principal, site_id, models.Gateway, body.gateway_id, public_key, GATEWAY
    )
    # Chain first, as for devices: a verifier trusts a batch signature only under a key the chain lists.
    register_tx = _tx(
        ledger.chain.registry().register_gateway_key(
            chain_id_of(enterprise_id), chain_id_of(body.gateway_id), key_fingerprint(public_key)
        )
    )
    now = int(time.time())
    with ledger.session_factory.begin() as session:
        gateway = models.Gateway(
            id=body.gateway_id,
            site_id=site_id,
            public_key=public_key,
            status="active",
            registered_tx=register_tx,
            created_at=now,
        )
        session.add(gateway)
        session.flush()
        record_registration(session, GATEWAY, body.gateway_id, public_key, register_tx, now)
        key = issue_key(session, Role.GATEWAY, now, enterprise_id=enterprise_id, gateway_id=body.gateway_id)
        read = _gateway_read(gateway, _history(session, GATEWAY, body.gateway_id))
        return GatewayCreated(**read.model_dump(), api_key=key)


@router.post("/gateways/{gateway_id}/revoke", response_model=GatewayRead)
def revoke_gateway(
    gateway_id: str, ledger: LedgerDep, principal: Annotated[Principal, Depends(require(*_MANAGERS))]
) -> GatewayRead:
    """Roles: the gateway's enterprise and its site engineers. Decommissions the gateway: revokes its key on
    chain and its API keys here, so its uploads are refused from then on. A replacement is registered under a
    new gateway id; to change the key of a gateway that stays in service, rotate it (POST …/keys)."""
    gateway, keys = _revoke_signer(
        ledger,
        principal,
        models.Gateway,
        GATEWAY,
        gateway_id,
        ledger.chain.registry().revoke_gateway_key,
        also=lambda session: revoke_gateway_keys(session, gateway_id),
    )
    return _gateway_read(gateway, keys)


@router.post(
    "/gateways/{gateway_id}/keys",
    status_code=201,
    response_model=GatewayRead,
    responses={200: {"model": GatewayRead, "description": "the key already is the gateway's current key"}},
)
def rotate_gateway_key(
    gateway_id: str,
    body: KeyRotate,
    ledger: LedgerDep,
    response: Response,
    principal: Annotated[Principal, Depends(require(*_MANAGERS))],
) -> GatewayRead:
    """Roles: the gateway's enterprise and its site engineers. Rotates the gateway key under the same gateway
    id: the old key is revoked on chain, the new one registered, then both recorded here. The gateway's API
    keys stay valid; batches signed with the old key are refused from then on (``revoked_gateway_key``).
    201: rotated; 200: that already is the current key (nothing done); 409: the gateway is revoked, or the
    key was ever used before; 422: not a P-256 key. Safe to retry after any failure."""
    gateway, keys, rotated = _rotate_signer_key(
        ledger, principal, models.Gateway, GATEWAY, gateway_id, bytes.fromhex(body.public_key), _gateway_chain(ledger)
    )
    if not rotated:
        response.status_code = 200
    return _gateway_read(gateway, keys)


@router.get("/gateways/{gateway_id}", response_model=GatewayRead)
def read_gateway(
    gateway_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require(*_READERS))]
) -> GatewayRead:
    """Roles: operator, regulator, the gateway's enterprise and its site engineers. With its key history."""
    gateway = session.get(models.Gateway, gateway_id)
    if gateway is None:
        if principal.role in (Role.OPERATOR, Role.REGULATOR):
            raise HTTPException(404, "no such gateway")
        raise forbidden()
    site_in_scope(session, principal, gateway.site_id)
    return _gateway_read(gateway, _history(session, GATEWAY, gateway_id))


@router.post("/sites/{site_id}/devices", status_code=201, response_model=DeviceRead)
def register_device(
    site_id: str,
    body: DeviceCreate,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(*_MANAGERS))],
) -> DeviceRead:
    """Roles: the site's enterprise and its site engineers. Registers the device key on chain, then here."""
    public_key = bytes.fromhex(body.public_key)
    enterprise_id = _enterprise_of_new_signer(
        ledger, principal, site_id, models.Device, body.device_id, public_key, DEVICE
    )
    # Chain first: a device is usable only once its key is on chain. If the DB write then fails, the
    # registration is retried and the chain answers KeyAlreadyRegistered (409): the operator reconciles.
    register_tx = _tx(
        ledger.chain.registry().register_device_key(
            chain_id_of(enterprise_id), chain_id_of(body.device_id), key_fingerprint(public_key)
        )
    )
    now = int(time.time())
    with ledger.session_factory.begin() as session:
        device = models.Device(
            id=body.device_id,
            site_id=site_id,
            public_key=public_key,
            status="active",
            registered_tx=register_tx,
            created_at=now,
        )
        session.add(device)
        session.flush()
        record_registration(session, DEVICE, body.device_id, public_key, register_tx, now)
        return _device_read(device, _history(session, DEVICE, body.device_id))


@router.post("/devices/{device_id}/revoke", response_model=DeviceRead)
def revoke_device(
    device_id: str, ledger: LedgerDep, principal: Annotated[Principal, Depends(require(*_MANAGERS))]
) -> DeviceRead:
    """Roles: the device's enterprise and its site engineers. Decommissions the device: revokes its key on
    chain, its readings are refused. To change the key of a device that stays in service, rotate it."""
    device, keys = _revoke_signer(
        ledger, principal, models.Device, DEVICE, device_id, ledger.chain.registry().revoke_device_key
    )
    return _device_read(device, keys)


@router.post(
    "/devices/{device_id}/keys",
    status_code=201,
    response_model=DeviceRead,
    responses={200: {"model": DeviceRead, "description": "the key already is the device's current key"}},
)
def rotate_device_key(
    device_id: str,
    body: KeyRotate,
    ledger: LedgerDep,
    response: Response,
    principal: Annotated[Principal, Depends(require(*_MANAGERS))],
) -> DeviceRead:
    """Roles: the device's enterprise and its site engineers. Rotates the device key under the same device id:
    the old key is revoked on chain, the new one registered, then both recorded here; gateways get the new key
    with their next registry sync. Readings signed with the old key (in flight during the rotation) are kept
    but quarantined (``rotated_device_key``), never counted. 201: rotated; 200: that already is the current key
    (nothing done); 409: the device is revoked, or the key was ever used before; 422: not a P-256 key. Safe to
    retry after any failure."""
    device, keys, rotated = _rotate_signer_key(
        ledger, principal, models.Device, DEVICE, device_id, bytes.fromhex(body.public_key), _device_chain(ledger)
    )
    if not rotated:
        response.status_code = 200
    return _device_read(device, keys)


@router.get("/devices/{device_id}", response_model=DeviceRead)
def read_device(
    device_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require(*_READERS))]
) -> DeviceRead:
    """Roles: operator, regulator, the device's enterprise and its site engineers. With its key history."""
    device = session.get(models.Device, device_id)
    if device is None:
        if principal.role in (Role.OPERATOR, Role.REGULATOR):
            raise HTTPException(404, "no such device")
        raise forbidden()
    site_in_scope(session, principal, device.site_id)
    return _device_read(device, _history(session, DEVICE, device_id))
