"""Gateway settings: a TOML file, overridden by CT_GATEWAY_* environment variables. Secrets stay SecretStr."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from carbontrace_protocol.topics import MAX_INGEST_WORKERS, MAX_PAYLOAD_BYTES, valid_share_group, worker_name

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CT_GATEWAY_", extra="forbid")

    gateway_id: str
    site_id: str
    cloud_url: str
    api_key: SecretStr
    key_file: Path
    spool_path: Path

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_client_id: str | None = None  # default: carbontrace-gateway-<gateway_id>
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_keepalive_s: int = 30
    # TLS with this CA pinned (the broker's, carbontrace/broker_config.py). Without it the gateway speaks plain
    # MQTT, which it accepts only to a broker on loopback.
    mqtt_ca_file: Path | None = None
    # Larger payloads are rejected (reason "oversized_payload") before they are copied or decoded.
    mqtt_max_payload_bytes: int = Field(MAX_PAYLOAD_BYTES, gt=0)
    # Subscribe as a member of this shared-subscription group ($share/<group>/...): the broker hands each
    # reading to one member. The members are this gateway's ingest workers (below), which all write into its
    # one spool, so a device's readings end up in one batch chain whichever worker verified them.
    mqtt_shared_group: str | None = None
    # Ingest processes verifying in parallel (ES256 verification is CPU-bound: one per core). Worker k > 0
    # connects as MQTT user and client id "<mqtt_username>.w<k>" with the same password
    # (`carbontrace broker add-gateway --workers N` issues them). Needs mqtt_shared_group.
    ingest_workers: int = Field(1, ge=1, le=MAX_INGEST_WORKERS)

    window_s: int = Field(900, gt=0)
    interval_s: int = Field(60, gt=0)  # the devices' reading interval, for "expected" in aggregates
    max_clock_skew_s: int = Field(300, ge=0)
    # A reading taken before its device's first time sync waits this long for a synced reading of the same
    # boot to re-time it from; after that it is rejected (retime_timeout), kept in the spool, never uploaded.
    retime_timeout_s: int = Field(3600, gt=0)
    emission_factor: str | None = None  # default: the registry's, else carbontrace_protocol's default

    spool_max_bytes: int = Field(1 << 30, gt=0)
    # Hard SQLite page ceiling (SQLITE_FULL beyond it, as on a full disk); None = only the disk limits.
    spool_max_page_count: int | None = None
    prune_acked: bool = True

    registry_refresh_s: float = 300.0
    # A message from an unknown device triggers an early refresh (a newly registered device), at most this often.
    registry_refresh_on_unknown_s: float = 30.0
    # A bad signature from a known, active device (its key may have just rotated) refreshes the registry and
    # verifies the message again, at most this often per device.
    registry_refresh_on_bad_signature_s: float = 10.0
    upload_timeout_s: float = 15.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    tick_s: float = 0.2
    ingest_batch_max: int = 500

    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108  # 0 disables the endpoint
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides the file (passed in as init values by ``load_settings``).
        return env_settings, init_settings

    @model_validator(mode="after")
    def _no_plain_mqtt_beyond_loopback(self) -> GatewaySettings:
        if self.mqtt_ca_file is None and self.mqtt_host not in LOOPBACK_HOSTS:
            raise ValueError(f"mqtt_host {self.mqtt_host!r} is not loopback: set mqtt_ca_file (TLS with the "
                             "broker's CA) and mqtt_username/mqtt_password")
        return self

    @model_validator(mode="after")
    def _workers_share_one_subscription(self) -> GatewaySettings:
        if self.mqtt_shared_group is not None and not valid_share_group(self.mqtt_shared_group):
            raise ValueError(f"mqtt_shared_group {self.mqtt_shared_group!r}: 1-64 characters without / + #")
        if self.ingest_workers > 1 and self.mqtt_shared_group is None:
            # Without a share group every worker would receive every reading: N times the work for nothing.
            raise ValueError("ingest_workers > 1 needs mqtt_shared_group")
        return self

    def client_id(self, worker: int = 0) -> str:
        # The production broker binds a client id to its username (use_username_as_clientid): use that.
        return worker_name(self.mqtt_client_id or self.mqtt_username or f"carbontrace-gateway-{self.gateway_id}",
                           worker)

    def username(self, worker: int = 0) -> str | None:
        return worker_name(self.mqtt_username, worker) if self.mqtt_username else None

    def redacted(self) -> dict[str, Any]:
        """The settings for logs: secrets shown as ********."""
        return {k: ("********" if isinstance(v, SecretStr) else str(v) if isinstance(v, Path) else v)
                for k, v in self.model_dump().items()}


def load_settings(path: Path | None, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
        if "gateway" in values and isinstance(values["gateway"], dict):
            values = values["gateway"]
    values.update(overrides)
    return GatewaySettings(**values)
