"""The cloud's configuration: one pydantic-settings class, read from CT_CLOUD_* environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CT_CLOUD_")

    # "development" lets the cloud create its checkpoint and chain keys at first start and binds to loopback only;
    # anything else needs them made by `carbontrace cloud bootstrap` and may bind anywhere.
    environment: str = "development"
    database_url: str = "sqlite:///./.carbontrace/cloud.db"
    # "embedded" = in-process EVM (eth-tester), else a JSON-RPC URL (Hardhat, a node of a real network).
    chain: str = "embedded"
    # Address of a CarbonTraceRegistry already deployed on `chain`; empty = deploy one (and remember it).
    registry_address: str = ""
    # "local" = directory-backed content-addressed store, else an IPFS Kubo RPC URL (http://127.0.0.1:5001).
    content_store: str = "local"
    # The local store is always written (IPFS pins from it), so an accepted batch is never lost.
    content_dir: str = "./.carbontrace/content"
    signing_key_file: str = "./.carbontrace/cloud-signing-key.hex"
    # The cloud's P-256 key for opening sealed batch blobs (carbontrace_protocol/sealed_blob.py), hex seed, 0600;
    # made with the signing key (bootstrap, or first start in development). Empty: cloud-encryption-key.hex next
    # to the signing key file.
    encryption_key_file: str = ""
    # The operator's chain key (secp256k1, hex, 0600): the cloud signs its own transactions with it. Created at
    # bootstrap (or first start in development); CT_CLOUD_CHAIN_KEY (hex) overrides the file (HSM/KMS later).
    chain_key_file: str = "./.carbontrace/cloud-chain-key.hex"
    # Development nodes only: top up the operator account from the node (its first unlocked account, or
    # anvil_setBalance / hardhat_setBalance). The embedded chain is always funded so. On a real network leave it
    # off and fund the operator's address (`carbontrace cloud chain-account` prints it and its balance) yourself.
    fund_operator_from_dev_node: bool = False
    # The embedded chain's transaction journal (cloud/embedded_chain.py): replayed at start, so a restarted
    # embedded cloud keeps its registry and old bundles still verify. Empty: embedded-chain.jsonl next to the
    # chain key file; "memory": nothing kept (each start is a fresh chain). Ignored for a node URL.
    embedded_chain_state: str = ""
    # Blocks that must follow the anchor's block before a checkpoint counts as anchored; None = 0 on the
    # embedded chain, 2 elsewhere.
    confirmations: int | None = None
    # Trace keeps what the chain said that cannot change (cloud/chain_facts.py): an active key's state is
    # served for trace_key_ttl_s after it was read (a revocation sent by another process is seen within it), the
    # checkpoint count until trace_count_ttl_s or until our database records a newer anchor.
    # trace_opened_batches: how many opened batch blobs (raw readings) trace keeps in memory, never on disk
    # (cloud/opened_batches.py); 0 turns that cache off.
    trace_key_ttl_s: float = 2.0
    trace_count_ttl_s: float = 30.0
    trace_opened_batches: int = 64
    # Where the first operator API key is written (0600, once) when the database has none: `carbontrace cloud
    # bootstrap` or the first start makes it; only its sha256 is stored. If the file already holds a key
    # (a secret mounted by a deployment) that key is adopted instead. `carbontrace cloud rotate-operator-key`
    # replaces it, revoking every older operator key. No key is configured by an environment variable.
    operator_key_file: str = "./.carbontrace/operator-api-key"
    # The bearer token Prometheus scrapes /metrics with (0600; made at first start when absent, like the operator
    # key; a mounted secret is adopted). Its own token, not an API key: a scraper holds no role. Empty: the file
    # `metrics-token` next to the operator key file.
    metrics_token_file: str = ""
    # JSON log lines at this level and above (cloud serve; carbontrace_host/logs.py, the gateway's format).
    log_level: str = "INFO"
    # Gone: a configured key cannot be revoked by rotation. Set, it stops the start with an explanation.
    admin_api_key: SecretStr | None = None
    # Failed API keys per client address: a bucket of `auth_failure_burst` attempts refilled at this rate.
    auth_failure_burst: int = 10
    auth_failures_per_minute: float = 10.0
    # Enterprise applications (public, no chain transaction until the operator approves): per client address a
    # bucket of `application_burst` refilled at `applications_per_hour`; at most `max_pending_applications`
    # waiting at once, then 503 until the operator approves or rejects some.
    application_burst: int = 3
    applications_per_hour: float = 6.0
    max_pending_applications: int = 200
    checkpoint_every_s: float = 60.0
    checkpoint_every_batches: int = 100
    # How often the background worker runs the anchoring and pinning jobs; 0 disables the worker (tests tick it).
    jobs_interval_s: float = 5.0
    leader_lease_s: float = 30.0
    # Request body limits (cloud/request_limits.py): batch uploads may be max_batch_bytes, every other body
    # (registry, /rpc, health: small JSON) max_body_bytes.
    max_batch_bytes: int = 8 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    # Public /rpc (cloud/routers/rpc.py): the gas any eth_call may burn (forced when absent or larger; the
    # verifier's view calls use well under 200k; a loop burns ~6M gas/s on the embedded EVM), and the wall time
    # one request (a batch) may take before its remaining calls are refused.
    rpc_call_gas: int = 2_000_000
    rpc_request_s: float = 2.0
    host: str = "127.0.0.1"
    port: int = 8080

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.admin_api_key is not None:
            raise ValueError(
                "CT_CLOUD_ADMIN_API_KEY is no longer read: the operator key is made by `carbontrace cloud bootstrap` "
                "(written to CT_CLOUD_OPERATOR_KEY_FILE) and replaced by `carbontrace cloud rotate-operator-key`"
            )
        self.check_bind(self.host)
        if self.confirmations is not None and self.confirmations < 0:
            raise ValueError("confirmations must be 0 or more")
        if self.checkpoint_every_batches < 1 or self.checkpoint_every_s <= 0:
            raise ValueError("checkpoint intervals must be positive")
        return self

    def check_bind(self, host: str) -> None:
        """Development (keys made on the fly, dev-node funding) stays on loopback: refuse any other address."""
        if self.environment == "development" and not is_loopback(host):
            raise ValueError(
                f"refusing to bind {host}: a development cloud listens on loopback only; set "
                "CT_CLOUD_ENVIRONMENT=production (after `carbontrace cloud bootstrap`) to serve beyond it"
            )

    @property
    def encryption_key_path(self) -> str:
        if self.encryption_key_file:
            return self.encryption_key_file
        return str(Path(self.signing_key_file).with_name("cloud-encryption-key.hex"))

    @property
    def embedded_chain_journal(self) -> Path | None:
        """Where the embedded chain keeps its history; None when it keeps none (or the chain is a node)."""
        if self.chain != "embedded" or self.embedded_chain_state == "memory":
            return None
        if self.embedded_chain_state:
            return Path(self.embedded_chain_state)
        return Path(self.chain_key_file).with_name("embedded-chain.jsonl")

    @property
    def metrics_token_path(self) -> str:
        if self.metrics_token_file:
            return self.metrics_token_file
        return str(Path(self.operator_key_file).with_name("metrics-token"))

    @property
    def confirmation_depth(self) -> int:
        if self.confirmations is not None:
            return self.confirmations
        return 0 if self.chain == "embedded" else 2

    @property
    def fund_operator(self) -> bool:
        return self.chain == "embedded" or self.fund_operator_from_dev_node

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
