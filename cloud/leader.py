"""One anchoring leader at a time: a PostgreSQL advisory lock, or on SQLite a lease row.

The advisory lock is held by one open connection and dies with it, so a crashed leader frees it at once.
The lease is a row updated inside a write transaction (SQLite serializes those), valid until it expires,
so a crashed leader frees it after `lease_s`.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol

from sqlalchemy import Connection, Engine, text, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.models import LeaderLease

# Any fixed 64-bit number, the same in every worker: "the CarbonTrace anchoring job".
ANCHOR_LOCK_KEY = 0x4354_414E_4348_4F52 & 0x7FFF_FFFF_FFFF_FFFF


class LeaderLock(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class AdvisoryLock:
    def __init__(self, engine: Engine, key: int = ANCHOR_LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        if self._connection is not None:
            return True
        connection = self.engine.connect()
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        connection.commit()
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._connection.commit()
        finally:
            self._connection.close()
            self._connection = None


class LeaseLock:
    def __init__(self, session_factory: sessionmaker[Session], lease_s: float, name: str = "anchor") -> None:
        self.session_factory = session_factory
        self.lease_ms = int(lease_s * 1000)
        self.name = name
        self.holder = uuid.uuid4().hex

    def acquire(self) -> bool:
        now = int(time.time() * 1000)
        with self.session_factory.begin() as session:
            row = session.get(LeaderLease, self.name)
            if row is None:
                session.add(LeaderLease(name=self.name, holder=self.holder, expires_at=now + self.lease_ms))
                return True
            if row.holder != self.holder and row.expires_at > now:
                return False
            row.holder = self.holder
            row.expires_at = now + self.lease_ms
            return True

    def release(self) -> None:
        with self.session_factory.begin() as session:
            session.execute(
                update(LeaderLease)
                .where(LeaderLease.name == self.name, LeaderLease.holder == self.holder)
                .values(expires_at=0)
            )


def leader_lock(engine: Engine, session_factory: sessionmaker[Session], lease_s: float) -> LeaderLock:
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine)
    return LeaseLock(session_factory, lease_s)
