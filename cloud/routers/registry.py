"""Parties: enterprises, trading platforms, regulators, site engineers; enterprise ↔ platform bindings.

Every party holds its own chain key; the cloud stores its address only. Bindings live on the chain: the
enterprise signs its request and the platform its confirmation (EIP-712 BindingConsent, typed data served by the
consent endpoints), the operator relays each signature and the contract checks it against the account registered
for that party. The state returned to both is read back from the contract.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cloud import consent, models
from cloud.chain import BindingState
from cloud.consent import ConsentAction
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.ledger_chain import chain_id_of
from cloud.schemas import (
    BindingCreate,
    BindingDecision,
    BindingRead,
    EngineerCreate,
    EnterpriseCreate,
    EnterpriseCreated,
    EnterpriseRead,
    KeyCreated,
    PlatformCreate,
    PlatformCreated,
    PlatformRead,
    RegulatorCreate,
    RegulatorCreated,
)
from cloud.security import Principal, Role, issue_key, key_row, regulator_id_of

router = APIRouter(prefix="/api/v1", tags=["registry"])


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8).upper()}"


def _state_name(state: BindingState) -> str:
    return state.name.lower()


def _party_account(session: Session, given: str) -> str:
    """The party's own chain address, checksummed. One already registered to another party is refused (409):
    one key, one party."""
    address = to_checksum_address(given)
    taken = select(models.Enterprise.id).where(func.lower(models.Enterprise.chain_account) == address.lower())
    taken_p = select(models.Platform.id).where(func.lower(models.Platform.chain_account) == address.lower())
    if session.execute(taken).first() is not None or session.execute(taken_p).first() is not None:
        raise HTTPException(409, "this chain account is registered to another party")
    return address


def _signature(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text.removeprefix("0x"))


def _consent_document(
    ledger: LedgerDep, account: str, enterprise_id: str, platform_id: str, action: ConsentAction
) -> dict[str, Any]:
    registry = ledger.chain.registry()
    return consent.typed_data_json(
        ledger.chain.connect().chain_id,
        registry.address,
        chain_id_of(enterprise_id),
        chain_id_of(platform_id),
        action,
        registry.consent_nonce(account),
    )


def _status(row: models.Enterprise) -> str:
    return "pending" if row.approved_at is None else "approved"


def _enterprise_read(row: models.Enterprise) -> EnterpriseRead:
    return EnterpriseRead(enterprise_id=row.id, name=row.name, chain_account=row.chain_account, status=_status(row))


@router.post("/enterprises", status_code=201, response_model=EnterpriseCreated)
def apply_enterprise(body: EnterpriseCreate, ledger: LedgerDep, request: Request) -> EnterpriseCreated:
    """Roles: public (no key). An enterprise applies with its own chain address: it gets a unique id and its
    enterprise API key (shown once), both pending until the operator approves the application (no chain
    transaction before that: a public route must not spend the operator's funds). Limited per client address
    (429 with Retry-After) and in the number waiting at once (503)."""
    address = request.client.host if request.client is not None else "unknown"
    wait = ledger.applications.retry_after(address)
    if wait is not None:
        raise HTTPException(429, "too many applications from this address", headers={"Retry-After": str(wait)})
    now = int(time.time())
    enterprise_id = _new_id("ENT")
    with ledger.session_factory.begin() as session:
        waiting = session.scalar(
            select(func.count()).select_from(models.Enterprise).where(models.Enterprise.approved_at.is_(None))
        )
        if (waiting or 0) >= ledger.settings.max_pending_applications:
            raise HTTPException(503, "too many applications awaiting approval; try again later")
        account = _party_account(session, body.chain_account)
        ledger.applications.failed(address)  # charged only for an application that is recorded
        session.add(models.Enterprise(id=enterprise_id, name=body.name, chain_account=account, created_at=now))
        session.flush()
        key = issue_key(session, Role.ENTERPRISE, now, enterprise_id=enterprise_id, label=body.name)
    return EnterpriseCreated(
        enterprise_id=enterprise_id, name=body.name, chain_account=account, status="pending", api_key=key
    )


@router.get("/enterprises", response_model=list[EnterpriseRead])
def list_enterprises(
    session: SessionDep,
    _: Annotated[Principal, Depends(require(Role.OPERATOR))],
    status: Annotated[str | None, Query(pattern="^(pending|approved)$")] = None,
) -> list[EnterpriseRead]:
    """Roles: operator. Enterprises, oldest first; ``status=pending`` for the applications to decide."""
    query = select(models.Enterprise).order_by(models.Enterprise.created_at, models.Enterprise.id)
    if status == "pending":
        query = query.where(models.Enterprise.approved_at.is_(None))
    elif status == "approved":
        query = query.where(models.Enterprise.approved_at.is_not(None))
    return [_enterprise_read(row) for row in session.scalars(query)]


@router.post("/enterprises/{enterprise_id}/approve", response_model=EnterpriseRead)
def approve_enterprise(
    enterprise_id: str, ledger: LedgerDep, _: Annotated[Principal, Depends(require(Role.OPERATOR))]
) -> EnterpriseRead:
    """Roles: operator. Approves a pending application: registers the enterprise on chain (the operator's
    transaction) and opens its keys. 409 if it is approved already."""
    registry = ledger.chain.registry()  # before the write transaction: first use may deploy and record it
    with ledger.session_factory.begin() as session:
        row = session.get(models.Enterprise, enterprise_id)
        if row is None:
            raise HTTPException(404, "no such enterprise")
        if row.approved_at is not None:
            raise HTTPException(409, "this enterprise is approved already")
        registry.register_enterprise(chain_id_of(enterprise_id), row.chain_account, row.name)
        row.approved_at = int(time.time())
        return _enterprise_read(row)


@router.delete("/enterprises/{enterprise_id}", status_code=204)
def reject_enterprise(
    enterprise_id: str, ledger: LedgerDep, _: Annotated[Principal, Depends(require(Role.OPERATOR))]
) -> None:
    """Roles: operator. Rejects a pending application: its record and keys are deleted (the chain address is
    free again). 409 for an approved enterprise (registered on chain: not undone here)."""
    with ledger.session_factory.begin() as session:
        row = session.get(models.Enterprise, enterprise_id)
        if row is None:
            raise HTTPException(404, "no such enterprise")
        if row.approved_at is not None:
            raise HTTPException(409, "an approved enterprise cannot be rejected")
        session.execute(delete(models.ApiKey).where(models.ApiKey.enterprise_id == enterprise_id))
        session.delete(row)


@router.get("/enterprises/{enterprise_id}", response_model=EnterpriseRead)
def read_enterprise(
    enterprise_id: str,
    session: SessionDep,
    principal: Annotated[
        Principal, Depends(require(Role.OPERATOR, Role.REGULATOR, Role.ENTERPRISE, allow_pending=True))
    ],
) -> EnterpriseRead:
    """Roles: operator, regulator, the enterprise itself (also while pending: how it learns of the approval)."""
    if principal.role == Role.ENTERPRISE and principal.enterprise_id != enterprise_id:
        raise forbidden()
    row = session.get(models.Enterprise, enterprise_id)
    if row is None:
        raise HTTPException(404, "no such enterprise")
    return _enterprise_read(row)


@router.post("/platforms", status_code=201, response_model=PlatformCreated)
def register_platform(
    body: PlatformCreate, ledger: LedgerDep, _: Annotated[Principal, Depends(require(Role.OPERATOR))]
) -> PlatformCreated:
    """Roles: operator. Registers a carbon-trading platform (on chain too) and returns its API key."""
    now = int(time.time())
    platform_id = _new_id("PLT")
    registry = ledger.chain.registry()
    with ledger.session_factory.begin() as session:
        account = _party_account(session, body.chain_account)
        registry.register_platform(chain_id_of(platform_id), account, body.name)
        session.add(models.Platform(id=platform_id, name=body.name, chain_account=account, created_at=now))
        session.flush()
        key = issue_key(session, Role.PLATFORM, now, platform_id=platform_id, label=body.name)
    return PlatformCreated(platform_id=platform_id, name=body.name, chain_account=account, api_key=key)


@router.get("/platforms", response_model=list[PlatformRead])
def list_platforms(session: SessionDep) -> list[PlatformRead]:
    """Roles: public. The trading platforms an enterprise may bind to."""
    rows = session.scalars(select(models.Platform).order_by(models.Platform.created_at, models.Platform.id))
    return [PlatformRead(platform_id=p.id, name=p.name, chain_account=p.chain_account) for p in rows]


@router.post("/regulators", status_code=201, response_model=RegulatorCreated)
def register_regulator(
    body: RegulatorCreate, ledger: LedgerDep, _: Annotated[Principal, Depends(require(Role.OPERATOR))]
) -> RegulatorCreated:
    """Roles: operator. Issues a regulator key (read access to every tenant) and names the regulator's id."""
    with ledger.session_factory.begin() as session:
        key = issue_key(session, Role.REGULATOR, int(time.time()), label=body.label)
        regulator_id = regulator_id_of(key_row(session, key))
    return RegulatorCreated(role=Role.REGULATOR.value, api_key=key, regulator_id=regulator_id)


@router.post("/enterprises/{enterprise_id}/engineers", status_code=201, response_model=KeyCreated)
def add_engineer(
    enterprise_id: str,
    body: EngineerCreate,
    ledger: LedgerDep,
    principal: Annotated[Principal, Depends(require(Role.ENTERPRISE))],
) -> KeyCreated:
    """Roles: the enterprise itself. Issues a site-engineer key scoped to this enterprise's sites."""
    if principal.enterprise_id != enterprise_id:
        raise forbidden()
    with ledger.session_factory.begin() as session:
        key = issue_key(session, Role.SITE_ENGINEER, int(time.time()), enterprise_id=enterprise_id, label=body.label)
    return KeyCreated(role=Role.SITE_ENGINEER.value, api_key=key)


@router.get("/enterprises/{enterprise_id}/bindings/{platform_id}/consent")
def binding_request_consent(
    enterprise_id: str,
    platform_id: str,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.ENTERPRISE))],
) -> dict[str, Any]:
    """Roles: the enterprise itself. The EIP-712 typed data (eth_signTypedData_v4) its key signs to request the
    binding; the nonce is the chain's, so a signature works once."""
    if principal.enterprise_id != enterprise_id:
        raise forbidden()
    enterprise = session.get(models.Enterprise, enterprise_id)
    if enterprise is None or session.get(models.Platform, platform_id) is None:
        raise HTTPException(404, "no such platform")
    return _consent_document(ledger, enterprise.chain_account, enterprise_id, platform_id, ConsentAction.REQUEST)


@router.post("/enterprises/{enterprise_id}/bindings", status_code=201, response_model=BindingRead)
def request_binding(
    enterprise_id: str,
    body: BindingCreate,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.ENTERPRISE))],
) -> BindingRead:
    """Roles: the enterprise itself. Requests binding to a platform: the enterprise's signed consent, relayed on
    chain by the operator (the contract rejects a signature that is not the enterprise's key: 409)."""
    if principal.enterprise_id != enterprise_id:
        raise forbidden()
    enterprise = session.get(models.Enterprise, enterprise_id)
    platform = session.get(models.Platform, body.platform_id)
    if enterprise is None or platform is None:
        raise HTTPException(404, "no such platform")
    registry = ledger.chain.registry()
    registry.request_binding_signed(chain_id_of(enterprise_id), chain_id_of(platform.id), _signature(body.signature))
    with ledger.session_factory.begin() as write:
        write.merge(models.Binding(enterprise_id=enterprise_id, platform_id=platform.id, updated_at=int(time.time())))
    state = registry.binding_state(chain_id_of(enterprise_id), chain_id_of(platform.id))
    return BindingRead(enterprise_id=enterprise_id, platform_id=platform.id, state=_state_name(state))


@router.get("/platforms/{platform_id}/bindings/{enterprise_id}/consent")
def binding_decision_consent(
    platform_id: str,
    enterprise_id: str,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.PLATFORM))],
    action: Annotated[str, Query(pattern="^(confirm|reject)$")] = "confirm",
) -> dict[str, Any]:
    """Roles: the platform itself. The EIP-712 typed data its key signs to confirm (or reject) a request."""
    if principal.platform_id != platform_id:
        raise forbidden()
    platform = session.get(models.Platform, platform_id)
    if platform is None or session.get(models.Binding, (enterprise_id, platform_id)) is None:
        raise HTTPException(404, "no binding request from this enterprise")
    chosen = ConsentAction.CONFIRM if action == "confirm" else ConsentAction.REJECT
    return _consent_document(ledger, platform.chain_account, enterprise_id, platform_id, chosen)


def _platform_decision(
    platform_id: str,
    enterprise_id: str,
    confirm: bool,
    body: BindingDecision,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Principal,
) -> BindingRead:
    if principal.platform_id != platform_id:
        raise forbidden()
    platform = session.get(models.Platform, platform_id)
    binding = session.get(models.Binding, (enterprise_id, platform_id))
    if platform is None or binding is None:
        raise HTTPException(404, "no binding request from this enterprise")
    registry = ledger.chain.registry()
    decide = registry.confirm_binding_signed if confirm else registry.reject_binding_signed
    decide(chain_id_of(enterprise_id), chain_id_of(platform_id), _signature(body.signature))
    state = registry.binding_state(chain_id_of(enterprise_id), chain_id_of(platform_id))
    return BindingRead(enterprise_id=enterprise_id, platform_id=platform_id, state=_state_name(state))


@router.post("/platforms/{platform_id}/bindings/{enterprise_id}/confirm", response_model=BindingRead)
def confirm_binding(
    platform_id: str,
    enterprise_id: str,
    body: BindingDecision,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.PLATFORM))],
) -> BindingRead:
    """Roles: the platform itself. Confirms a requested binding with the platform's signed consent."""
    return _platform_decision(platform_id, enterprise_id, True, body, ledger, session, principal)


@router.post("/platforms/{platform_id}/bindings/{enterprise_id}/reject", response_model=BindingRead)
def reject_binding(
    platform_id: str,
    enterprise_id: str,
    body: BindingDecision,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.PLATFORM))],
) -> BindingRead:
    """Roles: the platform itself. Rejects a requested binding with the platform's signed consent."""
    return _platform_decision(platform_id, enterprise_id, False, body, ledger, session, principal)


def _bindings(
    ledger: LedgerDep, session: SessionDep, enterprise_id: str | None, platform_id: str | None
) -> list[BindingRead]:
    query = select(models.Binding)
    if enterprise_id is not None:
        query = query.where(models.Binding.enterprise_id == enterprise_id)
    if platform_id is not None:
        query = query.where(models.Binding.platform_id == platform_id)
    registry = ledger.chain.registry()
    out = []
    for row in session.scalars(query.order_by(models.Binding.enterprise_id, models.Binding.platform_id)):
        state = registry.binding_state(chain_id_of(row.enterprise_id), chain_id_of(row.platform_id))
        out.append(BindingRead(enterprise_id=row.enterprise_id, platform_id=row.platform_id, state=_state_name(state)))
    return out


@router.get("/enterprises/{enterprise_id}/bindings", response_model=list[BindingRead])
def enterprise_bindings(
    enterprise_id: str,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.REGULATOR, Role.ENTERPRISE))],
) -> list[BindingRead]:
    """Roles: operator, regulator, the enterprise itself. Binding states as the chain holds them."""
    if principal.role == Role.ENTERPRISE and principal.enterprise_id != enterprise_id:
        raise forbidden()
    return _bindings(ledger, session, enterprise_id, None)


@router.get("/platforms/{platform_id}/bindings", response_model=list[BindingRead])
def platform_bindings(
    platform_id: str,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.REGULATOR, Role.PLATFORM))],
) -> list[BindingRead]:
    """Roles: operator, regulator, the platform itself. Binding states as the chain holds them."""
    if principal.role == Role.PLATFORM and principal.platform_id != platform_id:
        raise forbidden()
    return _bindings(ledger, session, None, platform_id)
