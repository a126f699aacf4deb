"""EIP-712 binding consents: the typed data an enterprise or a platform signs with its own chain key.

Pure: the cloud builds it for the party to sign (GET .../consent), the party's tool builds or checks it, the
contract (CarbonTraceRegistry._consume) recomputes the same digest and recovers the signer with ecrecover.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

DOMAIN_NAME = "CarbonTraceRegistry"
DOMAIN_VERSION = "1"


class ConsentAction(IntEnum):
    REQUEST = 1  # the enterprise asks to bind to the platform
    CONFIRM = 2  # the platform agrees
    REJECT = 3  # the platform refuses


CONSENT_TYPES: dict[str, list[dict[str, str]]] = {
    "BindingConsent": [
        {"name": "enterpriseId", "type": "bytes32"},
        {"name": "platformId", "type": "bytes32"},
        {"name": "action", "type": "uint8"},
        {"name": "nonce", "type": "uint256"},
    ]
}


def domain(chain_id: int, registry_address: str) -> dict[str, Any]:
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": registry_address,
    }


def message(enterprise_id: bytes, platform_id: bytes, action: ConsentAction, nonce: int) -> dict[str, Any]:
    return {"enterpriseId": enterprise_id, "platformId": platform_id, "action": int(action), "nonce": nonce}


def typed_data_json(
    chain_id: int, registry_address: str, enterprise_id: bytes, platform_id: bytes, action: ConsentAction, nonce: int
) -> dict[str, Any]:
    """The full eth_signTypedData_v4 document (bytes as 0x-hex), for wallets and the registration CLI."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **CONSENT_TYPES,
        },
        "primaryType": "BindingConsent",
        "domain": domain(chain_id, registry_address),
        "message": {
            "enterpriseId": "0x" + enterprise_id.hex(),
            "platformId": "0x" + platform_id.hex(),
            "action": int(action),
            "nonce": nonce,
        },
    }
