"""Readiness: can this process serve its API? One check per dependency (database, chain node, content store).

A check answers ok or the error's class name only: a failing RPC or IPFS URL may carry a provider's API key in
its path, and /readyz is unauthenticated (load balancers and systemd probe it), so no message leaves here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from carbontrace_host.logs import fields
from cloud.ledger import Ledger

log = logging.getLogger("carbontrace.cloud.readiness")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    error: str | None = None


def _database(ledger: Ledger) -> None:
    with ledger.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _chain(ledger: Ledger) -> None:
    ledger.chain.connect().block_number()


def _content_store(ledger: Ledger) -> None:
    if not ledger.store.local.directory.is_dir():
        raise FileNotFoundError("local content directory missing")
    if ledger.store.ipfs is not None:
        ledger.store.ipfs.version()


CHECKS: tuple[tuple[str, Callable[[Ledger], None]], ...] = (
    ("database", _database),
    ("chain", _chain),
    ("content_store", _content_store),
)


def check_dependencies(ledger: Ledger) -> list[Check]:
    results = []
    for name, probe in CHECKS:
        try:
            probe(ledger)
        except Exception as err:  # any failure means "not ready"; which one is all the answer says
            log.warning("dependency down", extra=fields(dependency=name, error=type(err).__name__))
            results.append(Check(name, False, type(err).__name__))
        else:
            results.append(Check(name, True))
    return results
