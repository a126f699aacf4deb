"""A read-only JSON-RPC endpoint onto the cloud's chain, so `carbontrace verify --rpc URL/rpc` works against the
embedded chain too (it lives inside this process). Only methods that read are forwarded; anything else,
sending transactions and account or signing methods included, is refused with JSON-RPC error -32601.

Embedded chain (eth-tester): the request goes through web3's request pipeline, which speaks eth-tester's
dialect; its Python-typed result is turned back into standard JSON-RPC (hex quantities, camelCase keys).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from web3.types import RPCEndpoint

from cloud.deps import LedgerDep

router = APIRouter(tags=["rpc"])

SAFE_METHODS = frozenset(
    {
        "eth_chainId",
        "eth_blockNumber",
        "eth_call",
        "eth_getLogs",
        "eth_getCode",
        "eth_getTransactionReceipt",
        "eth_getBlockByNumber",
        "net_version",
    }
)
_MAX_BATCH = 50


def to_json_rpc(value: Any) -> Any:
    """web3's Python values as JSON-RPC values: ints as hex quantities, bytes as 0x-hex, dicts as dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): to_json_rpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_rpc(v) for v in value]
    return str(value)


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _one(ledger: LedgerDep, request: Any) -> dict[str, Any]:
    if not isinstance(request, dict):
        return _error(None, -32600, "invalid request")
    request_id = request.get("id")
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        request_id = None
    method, params = request.get("method"), request.get("params", [])
    if not isinstance(method, str) or not isinstance(params, list):
        return _error(request_id, -32600, "invalid request")
    if method not in SAFE_METHODS:
        return _error(request_id, -32601, f"method {method[:64]!r} is not available on this read-only endpoint")
    w3 = ledger.chain.connect().w3
    try:
        result = w3.manager.request_blocking(RPCEndpoint(method), params)
    except Exception as err:  # any node-side rejection of the params: a JSON-RPC error, never a 500
        return _error(request_id, -32602, f"{type(err).__name__}: {str(err)[:200]}")
    return {"jsonrpc": "2.0", "id": request_id, "result": to_json_rpc(result)}


@router.post(
    "/rpc",
    responses={200: {"description": "JSON-RPC 2.0 response (errors too, as JSON-RPC error objects)"}},
)
def json_rpc(
    ledger: LedgerDep,
    request: Any = Body(  # noqa: B008 - FastAPI's way to declare a free-form JSON body
        ...,
        examples=[{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}],
        description="a JSON-RPC 2.0 request or a batch (array) of them; read-only methods only",
    ),
) -> JSONResponse:
    """Roles: public. Read-only JSON-RPC onto the chain the cloud anchors on: eth_chainId, eth_blockNumber,
    eth_call, eth_getLogs, eth_getCode, eth_getTransactionReceipt, eth_getBlockByNumber, net_version."""
    if isinstance(request, list):
        if not request or len(request) > _MAX_BATCH:
            return JSONResponse(_error(None, -32600, f"batch of 1..{_MAX_BATCH} requests expected"))
        return JSONResponse([_one(ledger, r) for r in request])
    return JSONResponse(_one(ledger, request))
