"""The scrape token of /metrics: a random bearer token in a 0600 file, made at first start when absent.

Why a token and not the gateway's loopback-only listener: the cloud's port is the public API, usually behind a
reverse proxy on the same host, so "the client is on loopback" would let anyone through the proxy. Why not an API
key: a scraper needs no role, and the operator key opens everything.
"""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path

from carbontrace_host.secret_files import write_secret

TOKEN_PATTERN = re.compile(r"ctm_[0-9a-f]{64}")


def load_or_create_metrics_token(path: str | Path) -> str:
    target = Path(path)
    if target.exists():
        token = target.read_text().strip()
        if not TOKEN_PATTERN.fullmatch(token):
            raise ValueError(f"{target} does not hold a metrics token (ctm_ and 64 hex digits)")
        return token
    token = "ctm_" + secrets.token_hex(32)
    write_secret(target, token + "\n", exclusive=True)
    return token


def authorized(authorization: str | None, token: str) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
