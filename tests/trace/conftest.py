"""Trace tests reuse the cloud fixtures: the app on SQLite and PostgreSQL, a Hardhat node."""

from __future__ import annotations

from tests.cloud.conftest import (  # noqa: F401 - re-exported fixtures
    client,
    cloud_hardhat_node,
    database_url,
    postgres_cluster,
    sqlite_client,
)
