"""Request (…Create) and response (…Read) bodies of the API, apart from the SQL tables."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from carbontrace_protocol import p256
from carbontrace_protocol.reading import valid_device_id

_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


def _sec1_hex(value: str) -> str:
    value = value.lower()
    if len(value) != 130 or not value.startswith("04"):
        raise ValueError("public_key must be the 65-byte uncompressed SEC1 key in hex (130 chars, 04…)")
    p256.decode_public_key(bytes.fromhex(value))  # ValueError (422) unless a point on P-256
    return value


ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
SIGNATURE_PATTERN = r"^0x[0-9a-fA-F]{130}$"


class EnterpriseCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    # The enterprise's own chain address; its key never leaves the enterprise (`carbontrace party apply` makes
    # one, 0600). It signs the enterprise's binding consents.
    chain_account: str = Field(pattern=ADDRESS_PATTERN)


class EnterpriseRead(BaseModel):
    enterprise_id: str
    name: str
    chain_account: str
    # "pending": applied, awaiting the operator (nothing on chain, its keys open nothing); "approved": registered.
    status: str = "approved"


class EnterpriseCreated(EnterpriseRead):
    api_key: str


class PlatformCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    chain_account: str = Field(pattern=ADDRESS_PATTERN)  # the platform's own (`carbontrace party keygen`)


class PlatformRead(BaseModel):
    platform_id: str
    name: str
    chain_account: str


class PlatformCreated(PlatformRead):
    api_key: str


class KeyCreated(BaseModel):
    role: str
    api_key: str


class RegulatorCreated(KeyCreated):
    regulator_id: str  # the id its reader key is registered under (PUT /regulators/{id}/reader-key)


class RegulatorCreate(BaseModel):
    label: str = Field(min_length=1, max_length=200)


class EngineerCreate(BaseModel):
    label: str = Field(min_length=1, max_length=200)


class BindingCreate(BaseModel):
    platform_id: str
    # The enterprise's EIP-712 BindingConsent (action request), from GET .../bindings/{platform_id}/consent.
    signature: str = Field(pattern=SIGNATURE_PATTERN)


class BindingDecision(BaseModel):
    # The platform's EIP-712 BindingConsent (action confirm or reject), from GET .../consent?action=...
    signature: str = Field(pattern=SIGNATURE_PATTERN)


class BindingRead(BaseModel):
    enterprise_id: str
    platform_id: str
    state: str  # none | requested | bound | rejected | revoked (read from the chain)


class SiteCreate(BaseModel):
    site_id: str = Field(pattern=_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    # Where the site draws its power: the factor follows from it by rule (carbontrace_protocol/factor_rule.py).
    country: str = Field(pattern=r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2
    province: str | None = Field(default=None, max_length=16)  # ISO 3166-2, e.g. CN-HE
    grid_region: str | None = Field(default=None, max_length=32)  # a catalogue grid region, e.g. CN-GRID-NORTH
    # Accepted only when it is the rule's answer (clients that still send the id they used to pick).
    emission_factor: str | None = None


class SiteRead(BaseModel):
    site_id: str
    enterprise_id: str
    name: str
    country: str
    province: str | None
    grid_region: str | None
    emission_factor: str  # the rule's factor for energy used now (what the site's gateways are told)


class GatewayCreate(BaseModel):
    gateway_id: str = Field(pattern=_ID_PATTERN)
    public_key: str

    _check_key = field_validator("public_key")(_sec1_hex)


class KeyRotate(BaseModel):
    """A device's or gateway's new key: the old one is revoked on chain and this one registered, same id."""

    public_key: str

    _check_key = field_validator("public_key")(_sec1_hex)


class SignerKeyRead(BaseModel):
    """One key of a device's or gateway's history (cloud/signer_keys.py); revoked_at None: the current key."""

    fingerprint: str  # hex sha256 of the SEC1 key, as on chain
    public_key: str
    registered_at: int  # unix seconds
    register_tx: str | None  # None: a gateway key from before gateway keys went on chain
    revoked_at: int | None
    revoke_tx: str | None


class GatewayRead(BaseModel):
    gateway_id: str
    site_id: str
    public_key: str  # the current key
    key_fingerprint: str
    status: str
    registered_tx: str | None  # of the current key; None: registered before gateway keys went on chain
    revoked_tx: str | None  # the gateway's revocation (decommissioning), not a rotation
    keys: list[SignerKeyRead]  # every key it ever had, oldest first


class GatewayCreated(GatewayRead):
    api_key: str  # shown once


class DeviceCreate(BaseModel):
    device_id: str
    public_key: str

    _check_key = field_validator("public_key")(_sec1_hex)

    @field_validator("device_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not valid_device_id(value):
            raise ValueError("device_id must be 1-64 chars of [A-Za-z0-9._-]")
        return value


class DeviceRead(BaseModel):
    device_id: str
    site_id: str
    public_key: str  # the current key
    status: str
    key_fingerprint: str
    registered_tx: str  # of the current key
    revoked_tx: str | None  # the device's revocation (decommissioning), not a rotation
    keys: list[SignerKeyRead]  # every key it ever had, oldest first


class RegistryDevice(BaseModel):
    device_id: str
    public_key: str
    status: str


class GatewayRegistry(BaseModel):
    gateway_id: str
    site_id: str
    emission_factor: str
    devices: list[RegistryDevice]


class GatewayState(BaseModel):
    last_batch_seq: int | None
    last_batch_hash: str | None


class Receipt(BaseModel):
    batch_id: str
    batch_hash: str
    cid: str
    log_index: int
    leaves: int
    readings: int
    # Reading leaves kept but not counted (their device was revoked mid-window): see quarantined_leaves.
    quarantined: int = 0
    status: str


class QuarantinedLeafRead(BaseModel):
    leaf_index: int
    kind: str  # "reading" | "aggregate"
    device_id: str
    seq: int | None
    reason: str
    quarantined_at: int


class BatchRead(Receipt):
    gateway_id: str
    site_id: str
    batch_seq: int
    root: str
    window: list[int]
    received_at: int
    quarantined_leaves: list[QuarantinedLeafRead] = []


class ReadingRead(BaseModel):
    device_id: str
    seq: int
    timestamp: int
    flags: int
    co2_ppm: int | None
    temperature_centi_c: int | None
    humidity_centi_pct: int | None
    energy_wh: int | None
    power_deci_w: int | None
    batch_id: str
    leaf_index: int


class CheckpointRead(BaseModel):
    seq: int
    tree_size: int
    root: str
    timestamp: int
    cid: str
    signed: str  # hex of the COSE_Sign1 checkpoint
    anchored: bool
    tx_hash: str | None
    gas_used: int | None
    block_number: int | None


class InclusionProof(BaseModel):
    batch_id: str
    log_index: int
    tree_size: int
    leaf_hash: str
    root: str
    proof: list[str]


class ConsistencyProof(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]
