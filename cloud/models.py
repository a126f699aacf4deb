"""SQL tables (SQLAlchemy 2 typed models). The API's request/response shapes are in cloud/schemas.py."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Small key/value facts about this deployment (the registry contract address per chain)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Enterprise(Base):
    __tablename__ = "enterprises"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    chain_account: Mapped[str] = mapped_column(String(42), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # None while the application awaits the operator: no chain transaction yet and its keys open nothing.
    approved_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)


class Platform(Base):
    __tablename__ = "platforms"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    chain_account: Mapped[str] = mapped_column(String(42), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Binding(Base):
    """Mirror of the on-chain binding state (the chain is the truth; reads go to the chain)."""

    __tablename__ = "bindings"
    enterprise_id: Mapped[str] = mapped_column(ForeignKey("enterprises.id"), primary_key=True)
    platform_id: Mapped[str] = mapped_column(ForeignKey("platforms.id"), primary_key=True)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """An API key, stored as sha256 of the random key; the scope columns say whose it is."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(200), default="")
    enterprise_id: Mapped[str | None] = mapped_column(ForeignKey("enterprises.id"), nullable=True)
    platform_id: Mapped[str | None] = mapped_column(ForeignKey("platforms.id"), nullable=True)
    gateway_id: Mapped[str | None] = mapped_column(ForeignKey("gateways.id"), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    enterprise_id: Mapped[str] = mapped_column(ForeignKey("enterprises.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # The factor id picked at registration before 0012; kept as history, never read: a site's factor is the
    # catalogue rule's answer for its location and the activity's year (cloud/site_factors.py).
    emission_factor: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2), server_default="CN")  # ISO 3166-1 alpha-2
    province: Mapped[str | None] = mapped_column(String(16), nullable=True)  # ISO 3166-2, e.g. CN-HE
    grid_region: Mapped[str | None] = mapped_column(String(32), nullable=True)  # catalogue code, e.g. CN-GRID-NORTH
    created_at: Mapped[int] = mapped_column(BigInteger)


class Gateway(Base):
    __tablename__ = "gateways"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(65))
    status: Mapped[str] = mapped_column(String(10), server_default="active")  # "active" | "revoked"
    registered_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)  # NULL: registered before 0003
    revoked_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(65))
    status: Mapped[str] = mapped_column(String(10))  # "active" | "revoked"
    registered_tx: Mapped[str] = mapped_column(String(66))
    revoked_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class SignerKey(Base):
    """Every key a device or gateway ever had, oldest first (the current one is also Device/Gateway.public_key).

    A proof names the key that signed a reading or batch by fingerprint; this table answers for keys rotated
    out since. ``revoked_at`` is NULL while the key is the signer's current one. Rows are only ever added or
    marked revoked, never deleted: a fingerprint is used once, ever, as on chain."""

    __tablename__ = "signer_keys"
    __table_args__ = (Index("ix_signer_keys_signer", "kind", "signer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))  # "device" | "gateway"
    signer_id: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(65))  # uncompressed SEC1
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)  # sha256 of public_key
    registered_at: Mapped[int] = mapped_column(BigInteger)  # unix seconds
    register_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)  # NULL: gateway from before 0003
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoke_tx: Mapped[str | None] = mapped_column(String(66), nullable=True)


class BlobReader(Base):
    """A reader's P-256 encryption public key: the key every batch blob sealed from now on is also wrapped to
    (carbontrace_protocol/sealed_blob.py). ``kind`` "enterprise" (``party_id`` an enterprise id: its own
    batches) or "regulator" (``party_id`` a name: every batch). One active key per party; rotating revokes the
    current row and adds one, revoking sets ``revoked_at``. Both affect only batches sealed afterwards."""

    __tablename__ = "blob_readers"
    __table_args__ = (Index("ix_blob_readers_party", "kind", "party_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(12))  # "enterprise" | "regulator"
    party_id: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(65))  # uncompressed SEC1
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)  # sha256 of public_key
    added_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Blob(Base):
    """A blob in the content store; `pinned` is False until IPFS holds it (always True for the local store)."""

    __tablename__ = "blobs"
    cid: Mapped[str] = mapped_column(String(100), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # "batch" | "checkpoint"
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("gateway_id", "batch_seq"),)
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"))
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    batch_seq: Mapped[int] = mapped_column(BigInteger)
    batch_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    blob_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_header: Mapped[bytes] = mapped_column(LargeBinary)
    cid: Mapped[str] = mapped_column(ForeignKey("blobs.cid"))
    window_start: Mapped[int] = mapped_column(BigInteger)
    window_end: Mapped[int] = mapped_column(BigInteger)
    leaves: Mapped[int] = mapped_column(Integer)
    readings: Mapped[int] = mapped_column(Integer)
    log_index: Mapped[int] = mapped_column(BigInteger, unique=True)
    received_at: Mapped[int] = mapped_column(BigInteger)


class Reading(Base):
    """The SQL index of a counted reading: where its signed leaf is, and which measurements it has."""

    __tablename__ = "readings"
    __table_args__ = (UniqueConstraint("device_id", "seq"), Index("ix_readings_device_ts", "device_id", "timestamp"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[int] = mapped_column(Integer)
    # Which measurements the reading carries (carbontrace_protocol/measures.py), not their values: those
    # stay in the sealed batch blob, so SQL at rest reveals no CO2, temperature, humidity or power.
    measures: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    leaf_index: Mapped[int] = mapped_column(Integer)


class QuarantinedLeaf(Base):
    """A verified leaf of an accepted batch that is kept but not counted: the readings of a device revoked while
    they were in the gateway's open window, and that device's aggregate. Its bytes stay in the batch blob (and
    the batch tree), so proofs of the other leaves are unchanged; totals never see it (not in readings or
    aggregates)."""

    __tablename__ = "quarantined_leaves"
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # "reading" | "aggregate" | "flux"
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # readings only
    reason: Mapped[str] = mapped_column(String(32))
    quarantined_at: Mapped[int] = mapped_column(BigInteger)


class EnergyBaseline(Base):
    """Per gateway and device, the highest-sequence reading with energy the gateway sent (counted or
    quarantined): the next aggregate's energy starts there (batch_verify's ``baseline``), as the gateway's
    does. One row per device, not a counter per reading: SQL keeps no energy profile finer than the public
    aggregates (whose ``energy.end_wh`` is this same counter at each window's end)."""

    __tablename__ = "energy_baselines"
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    # when that reading was measured (None for a baseline kept before attribution): the next aggregate's
    # first energy run starts there (carbontrace_protocol/attribution.py)
    timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Aggregate(Base):
    __tablename__ = "aggregates"
    __table_args__ = (
        Index("ix_aggregates_device_window", "device_id", "window_start"),
        Index("ix_aggregates_window", "window_start"),
        Index("ix_aggregates_span", "span_start"),
    )
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[int] = mapped_column(BigInteger)
    window_end: Mapped[int] = mapped_column(BigInteger)
    received: Mapped[int] = mapped_column(Integer)
    delta_wh: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    emissions_g_e4: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # grams × 1e4
    factor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)
    # the time the leaf covers (views.leaf_time): its window widened to its energy's measurement time, so a
    # statement finds energy buffered through an outage in the period it was used
    span_start: Mapped[int] = mapped_column(BigInteger)
    span_end: Mapped[int] = mapped_column(BigInteger)


class Flux(Base):
    """The SQL index of a counted chamber flux record (carbontrace_protocol/flux.py): where its signed leaf is,
    which readings were its samples, its session and QA flag. Not its figures: the flux, its uncertainty and the
    chamber stay in the sealed batch blob, as a reading's values do."""

    __tablename__ = "fluxes"
    __table_args__ = (
        UniqueConstraint("device_id", "first_seq"),
        Index("ix_fluxes_device_session", "device_id", "session_start"),
    )
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    leaf_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    session_start: Mapped[int] = mapped_column(BigInteger)
    session_end: Mapped[int] = mapped_column(BigInteger)
    qa: Mapped[str] = mapped_column(String(20))


class LogNode(Base):
    """Perfect subtree hashes of the append-only log: (level, index) covers leaves [index·2^level, (index+1)·2^level).

    Level 0 are the leaf hashes; `merkle.CompactRange.append` emits every row, so proofs cost O(log N) reads."""

    __tablename__ = "log_nodes"
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogState(Base):
    """One row (id=1): the log size. Locked (FOR UPDATE) by the appender so appends serialize."""

    __tablename__ = "log_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # equals the on-chain checkpoint sequence
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)  # ix_checkpoints_tree_size
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp: Mapped[int] = mapped_column(BigInteger)
    signed: Mapped[bytes] = mapped_column(LargeBinary)
    cid: Mapped[str] = mapped_column(ForeignKey("blobs.cid"))
    anchored: Mapped[bool] = mapped_column(Boolean, default=False)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    gas_used: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class LeaderLease(Base):
    """SQLite's stand-in for a PostgreSQL advisory lock: whoever holds an unexpired lease leads."""

    __tablename__ = "leader_leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[int] = mapped_column(BigInteger)  # unix milliseconds


class DeviceHealth(Base):
    """What a gateway last reported about one device label: rejections it counted (by reason, JSON object)
    and the sequence ranges it is missing (JSON list of [lo, hi]). Labels include "_unregistered"."""

    __tablename__ = "device_health"
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"), primary_key=True)
    device_label: Mapped[str] = mapped_column(String(64), primary_key=True)
    rejected: Mapped[int] = mapped_column(BigInteger)
    rejections: Mapped[str] = mapped_column(String(2000))
    missing: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[str] = mapped_column(String(4000))
    reported_at: Mapped[int] = mapped_column(BigInteger)


class Restatement(Base):
    """A restated statement and the one it restates, both kept in the content store under their CIDs
    (carbontrace_protocol/restatement.py); rows are only ever added."""

    __tablename__ = "restatements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    enterprise_id: Mapped[str] = mapped_column(ForeignKey("enterprises.id"), index=True)
    period_start: Mapped[int] = mapped_column(BigInteger)
    period_end: Mapped[int] = mapped_column(BigInteger)
    original_cid: Mapped[str] = mapped_column(String(128))
    original_sha256: Mapped[str] = mapped_column(String(64))
    restated_cid: Mapped[str] = mapped_column(String(128), unique=True)
    factor_changes: Mapped[str] = mapped_column(String(2000))  # the restatement's factor_changes, as JSON
    issued_at: Mapped[int] = mapped_column(BigInteger)


class ContractualInstrument(Base):
    """A contractual instrument (certificate or contract, carbontrace_protocol/instruments.py) an enterprise
    registered for one of its sites, for market-based Scope 2. Rows are only ever added; ``record_sha256`` is
    sha256 of the record's canonical JSON, as statements carry it."""

    __tablename__ = "contractual_instruments"
    __table_args__ = (Index("ix_contractual_instruments_identity", "issuer", "instrument_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    enterprise_id: Mapped[str] = mapped_column(ForeignKey("enterprises.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    issuer: Mapped[str] = mapped_column(String(200))
    instrument_id: Mapped[str] = mapped_column(String(128))
    volume_wh: Mapped[int] = mapped_column(BigInteger)
    delivery_start: Mapped[int] = mapped_column(BigInteger)
    delivery_end: Mapped[int] = mapped_column(BigInteger)
    rate_e4: Mapped[int] = mapped_column(Integer)  # kgCO2/kWh in units of 1e-4 (0: renewable)
    evidence_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    record_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    registered_at: Mapped[int] = mapped_column(BigInteger)
