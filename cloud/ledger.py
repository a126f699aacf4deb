"""The ledger's services wired from settings: DB, content store, chain, ingestion, anchoring jobs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud import chain as chainlib
from cloud import signer_keys
from cloud.anchoring import Anchorer
from cloud.blob_readers import BlobSealer
from cloud.chain_signer import operator_signer
from cloud.content_store import ContentStore, IpfsClient, LocalContentStore
from cloud.db import make_engine, migrate, read_session_factory, session_factory
from cloud.encryption_keys import load_sealer
from cloud.ingest import Ingestor
from cloud.leader import leader_lock
from cloud.ledger_chain import CloudKeyConflict, LedgerChain
from cloud.metrics import CloudMetrics
from cloud.opened_batches import OpenedBatches
from cloud.rate_limit import FailureLimiter
from cloud.security import bootstrap_operator_key
from cloud.settings import Settings
from cloud.signing_key import load_or_create, public_key

logger = logging.getLogger("carbontrace.cloud")


@dataclass
class Ledger:
    """Everything a request or job needs; one per app (stateless workers share only the DB and the chain)."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    read_session_factory: sessionmaker[Session]
    store: ContentStore
    chain: LedgerChain
    ingestor: Ingestor
    anchorer: Anchorer
    signing_key: int
    auth_failures: FailureLimiter
    applications: FailureLimiter
    sealer: BlobSealer
    # trace's opened batch blobs (raw readings): memory only, bounded by settings.trace_opened_batches
    opened_batches: OpenedBatches = field(default_factory=lambda: OpenedBatches(0))
    metrics: CloudMetrics = field(default_factory=CloudMetrics)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run_jobs(self) -> None:
        while not self._stop.wait(self.settings.jobs_interval_s):
            try:
                report = self.anchorer.tick()
                if report.error is not None:
                    logger.warning("anchoring waits: %s", report.error)
            except Exception:  # a job failure must not kill the worker thread; it retries next round
                logger.exception("anchoring job failed")

    def stop(self) -> None:
        self._stop.set()


def _check_cloud_key_on_chain(ledger_chain: LedgerChain) -> None:
    """At start-up: the chain must list the cloud's signing key (registered now if new). A conflicting key stops
    the start; a chain that is down only delays the check to the first registry use."""
    try:
        ledger_chain.registry()
    except CloudKeyConflict:
        logger.error("the cloud signing key does not match the chain's cloud key; not starting")
        raise
    except chainlib.ChainUnavailable as exc:
        logger.warning("chain unavailable at start-up; the cloud key is checked on first use: %s", exc)


def build_ledger(settings: Settings, chain: chainlib.Chain | None = None) -> Ledger:
    metrics = CloudMetrics()
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    development = settings.environment == "development"
    signing_key = load_or_create(settings.signing_key_file, allow_create=development)
    sealer = load_sealer(settings.encryption_key_path, development)
    with sessions.begin() as session:
        if bootstrap_operator_key(session, settings.operator_key_file, int(time.time())):
            logger.warning("the first operator API key is in %s (0600)", settings.operator_key_file)
        # every cloud key that ever signed a checkpoint stays known, so old checkpoints keep their proofs
        signer_keys.remember_cloud_key(session, public_key(signing_key), int(time.time()))
    ipfs = None if settings.content_store == "local" else IpfsClient(settings.content_store)
    store = ContentStore(LocalContentStore(settings.content_dir), ipfs, on_error=metrics.content_store_error)
    operator, _ = operator_signer(settings.chain_key_file, allow_create=development)
    ledger_chain = LedgerChain(
        settings.chain,
        sessions,
        settings.registry_address,
        chain,
        public_key(signing_key),
        signer=operator,
        fund_operator=settings.fund_operator,
        embedded_journal=settings.embedded_chain_journal,
    )
    _check_cloud_key_on_chain(ledger_chain)
    anchorer = Anchorer(
        sessions,
        store,
        ledger_chain,
        signing_key,
        leader_lock(engine, sessions, settings.leader_lease_s),
        settings.checkpoint_every_s,
        settings.checkpoint_every_batches,
        confirmations=settings.confirmation_depth,
        on_chain_error=metrics.chain_error,
    )
    readers = read_session_factory(engine)
    ingestor = Ingestor(sessions, store, sealer, readers)
    limiter = FailureLimiter(settings.auth_failure_burst, settings.auth_failures_per_minute)
    applications = FailureLimiter(settings.application_burst, settings.applications_per_hour / 60.0)
    metrics.watch_queues(readers)
    return Ledger(
        settings,
        engine,
        sessions,
        readers,
        store,
        ledger_chain,
        ingestor,
        anchorer,
        signing_key,
        limiter,
        applications,
        sealer,
        OpenedBatches(settings.trace_opened_batches),
        metrics,
    )
