"""Parties: enterprises, trading platforms, regulators, site engineers; enterprise ↔ platform bindings.

Bindings live on the chain: the enterprise's request is sent from its custodial account, the platform's
confirmation from the platform's, and the state returned to both is read back from the contract.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from cloud import models
from cloud.chain import BindingState
from cloud.deps import LedgerDep, SessionDep, forbidden, require
from cloud.ledger_chain import chain_id_of
from cloud.schemas import (
    BindingCreate,
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
)
from cloud.security import Principal, Role, issue_key

router = APIRouter(prefix="/api/v1", tags=["registry"])


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8).upper()}"


def _state_name(state: BindingState) -> str:
    return state.name.lower()


@router.post("/enterprises", status_code=201, response_model=EnterpriseCreated)
def apply_enterprise(body: EnterpriseCreate, ledger: LedgerDep) -> EnterpriseCreated:
    """Roles: public (no key). An enterprise applies: it gets a unique id, a custodial chain account
    registered in the contract, and its enterprise API key (shown once)."""
    now = int(time.time())
    enterprise_id = _new_id("ENT")
    registry = ledger.chain.registry()  # before the write transaction: first use may deploy and record it
    with ledger.session_factory.begin() as session:
        account = ledger.chain.allocate_account(session)
        registry.register_enterprise(chain_id_of(enterprise_id), account, body.name)
        session.add(models.Enterprise(id=enterprise_id, name=body.name, chain_account=account, created_at=now))
        session.flush()
        key = issue_key(session, Role.ENTERPRISE, now, enterprise_id=enterprise_id, label=body.name)
    return EnterpriseCreated(enterprise_id=enterprise_id, name=body.name, chain_account=account, api_key=key)


@router.get("/enterprises/{enterprise_id}", response_model=EnterpriseRead)
def read_enterprise(
    enterprise_id: str,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.REGULATOR, Role.ENTERPRISE))],
) -> EnterpriseRead:
    """Roles: operator, regulator, the enterprise itself."""
    if principal.role == Role.ENTERPRISE and principal.enterprise_id != enterprise_id:
        raise forbidden()
    row = session.get(models.Enterprise, enterprise_id)
    if row is None:
        raise HTTPException(404, "no such enterprise")
    return EnterpriseRead(enterprise_id=row.id, name=row.name, chain_account=row.chain_account)


@router.post("/platforms", status_code=201, response_model=PlatformCreated)
def register_platform(
    body: PlatformCreate, ledger: LedgerDep, _: Annotated[Principal, Depends(require(Role.OPERATOR))]
) -> PlatformCreated:
    """Roles: operator. Registers a carbon-trading platform (on chain too) and returns its API key."""
    now = int(time.time())
    platform_id = _new_id("PLT")
    registry = ledger.chain.registry()
    with ledger.session_factory.begin() as session:
        account = ledger.chain.allocate_account(session)
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


@router.post("/regulators", status_code=201, response_model=KeyCreated)
def register_regulator(
    body: RegulatorCreate, ledger: LedgerDep, _: Annotated[Principal, Depends(require(Role.OPERATOR))]
) -> KeyCreated:
    """Roles: operator. Issues a regulator key (read access to every tenant)."""
    with ledger.session_factory.begin() as session:
        key = issue_key(session, Role.REGULATOR, int(time.time()), label=body.label)
    return KeyCreated(role=Role.REGULATOR.value, api_key=key)


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


@router.post("/enterprises/{enterprise_id}/bindings", status_code=201, response_model=BindingRead)
def request_binding(
    enterprise_id: str,
    body: BindingCreate,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.ENTERPRISE))],
) -> BindingRead:
    """Roles: the enterprise itself. Requests binding to a platform, on chain from the enterprise's account."""
    if principal.enterprise_id != enterprise_id:
        raise forbidden()
    enterprise = session.get(models.Enterprise, enterprise_id)
    platform = session.get(models.Platform, body.platform_id)
    if enterprise is None or platform is None:
        raise HTTPException(404, "no such platform")
    contract = ledger.chain.as_party(enterprise.chain_account)
    contract.request_binding(chain_id_of(enterprise_id), chain_id_of(platform.id))
    with ledger.session_factory.begin() as write:
        write.merge(models.Binding(enterprise_id=enterprise_id, platform_id=platform.id, updated_at=int(time.time())))
    state = contract.binding_state(chain_id_of(enterprise_id), chain_id_of(platform.id))
    return BindingRead(enterprise_id=enterprise_id, platform_id=platform.id, state=_state_name(state))


def _platform_decision(
    platform_id: str, enterprise_id: str, confirm: bool, ledger: LedgerDep, session: SessionDep, principal: Principal
) -> BindingRead:
    if principal.platform_id != platform_id:
        raise forbidden()
    platform = session.get(models.Platform, platform_id)
    binding = session.get(models.Binding, (enterprise_id, platform_id))
    if platform is None or binding is None:
        raise HTTPException(404, "no binding request from this enterprise")
    contract = ledger.chain.as_party(platform.chain_account)
    if confirm:
        contract.confirm_binding(chain_id_of(enterprise_id), chain_id_of(platform_id))
    else:
        contract.reject_binding(chain_id_of(enterprise_id), chain_id_of(platform_id))
    state = contract.binding_state(chain_id_of(enterprise_id), chain_id_of(platform_id))
    return BindingRead(enterprise_id=enterprise_id, platform_id=platform_id, state=_state_name(state))


@router.post("/platforms/{platform_id}/bindings/{enterprise_id}/confirm", response_model=BindingRead)
def confirm_binding(
    platform_id: str,
    enterprise_id: str,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.PLATFORM))],
) -> BindingRead:
    """Roles: the platform itself. Confirms a requested binding, on chain from the platform's account."""
    return _platform_decision(platform_id, enterprise_id, True, ledger, session, principal)


@router.post("/platforms/{platform_id}/bindings/{enterprise_id}/reject", response_model=BindingRead)
def reject_binding(
    platform_id: str,
    enterprise_id: str,
    ledger: LedgerDep,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Role.PLATFORM))],
) -> BindingRead:
    """Roles: the platform itself. Rejects a requested binding on chain."""
    return _platform_decision(platform_id, enterprise_id, False, ledger, session, principal)


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
