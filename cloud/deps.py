"""Request-scoped dependencies: the ledger services, a DB session, the calling principal and role checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from carbontrace_protocol.errors import GATEWAY_REVOKED
from cloud.ledger import Ledger
from cloud.security import Principal, Role, authenticate, is_revoked_gateway_key

FORBIDDEN = "forbidden"


def get_ledger(request: Request) -> Ledger:
    return request.app.state.ledger  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    with get_ledger(request).read_session_factory() as session:
        yield session


def get_principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal | None:
    """None for the public (no key); 401 for a key that is malformed, unknown or revoked; 429 (Retry-After) once
    the caller's address has failed too often (cloud/rate_limit.py)."""
    if authorization is None:
        return None
    limiter = get_ledger(request).auth_failures
    address = request.client.host if request.client is not None else "unknown"
    wait = limiter.retry_after(address)
    if wait is not None:
        raise HTTPException(429, "too many failed API keys from this address", headers={"Retry-After": str(wait)})
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key:
        limiter.failed(address)
        raise HTTPException(401, "expected Authorization: Bearer <api key>", headers={"WWW-Authenticate": "Bearer"})
    with get_ledger(request).read_session_factory() as session:
        principal = authenticate(session, key.strip())
        revoked_gateway = principal is None and is_revoked_gateway_key(session, key.strip())
    if principal is None:
        limiter.failed(address)
        detail = GATEWAY_REVOKED if revoked_gateway else "invalid API key"
        raise HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
    return principal


PENDING = "enterprise application awaiting operator approval"


def require(*roles: Role, allow_pending: bool = False) -> Callable[[Principal | None], Principal]:
    """A dependency admitting only the given roles (401 without a key, 403 with another role's key, 403 for the
    key of an enterprise the operator has not approved yet unless ``allow_pending``)."""

    def check(principal: Annotated[Principal | None, Depends(get_principal)]) -> Principal:
        if principal is None:
            raise HTTPException(401, "API key required", headers={"WWW-Authenticate": "Bearer"})
        if principal.role not in roles:
            raise HTTPException(403, FORBIDDEN)
        if principal.pending and not allow_pending:
            raise HTTPException(403, PENDING)
        return principal

    return check


def forbidden() -> HTTPException:
    # One body for every scope failure, whether or not the thing exists: nothing about other tenants leaks.
    return HTTPException(403, FORBIDDEN)


SessionDep = Annotated[Session, Depends(get_session)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
