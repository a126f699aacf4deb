"""The cloud's configuration: one pydantic-settings class, read from CT_CLOUD_* environment variables."""

from __future__ import annotations

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_ADMIN_KEY = "dev-admin-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CT_CLOUD_")

    # "development" allows the placeholder secrets below; anything else refuses them.
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
    admin_api_key: SecretStr = SecretStr(PLACEHOLDER_ADMIN_KEY)
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
        if self.environment != "development":
            if self.admin_api_key.get_secret_value() in ("", PLACEHOLDER_ADMIN_KEY):
                raise ValueError("CT_CLOUD_ADMIN_API_KEY must be set to a real secret outside development")
            if len(self.admin_api_key.get_secret_value()) < 32:
                raise ValueError("CT_CLOUD_ADMIN_API_KEY must be at least 32 characters")
        if self.checkpoint_every_batches < 1 or self.checkpoint_every_s <= 0:
            raise ValueError("checkpoint intervals must be positive")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
