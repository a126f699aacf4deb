"""A read-only JSON-RPC endpoint onto the cloud's chain, so `carbontrace verify --rpc URL/rpc` works against the
embedded chain too (it lives inside this process). Only methods that read are forwarded; anything else,
sending transactions and account or signing methods included, is refused with JSON-RPC error -32601.

One request cannot burn the node's CPU: eth_call runs with at most ``rpc_call_gas`` (the block gas limit
otherwise, ~5 s of CPU for one call on the embedded EVM), a batch holds at most ``_MAX_BATCH`` calls and
stops with a JSON-RPC error for each remaining call once it has run ``rpc_request_s``. eth_getLogs needs both
ends of its block range, at most ``MAX_LOG_BLOCKS`` apart, serves the registry's logs only and at most
``_MAX_LOGS`` of them (the verifier reads events in spans of that many blocks: cloud/chain.py).

Embedded chain (eth-tester): the request goes through web3's request pipeline, which speaks eth-tester's
dialect; its Python-typed result is turned back into standard JSON-RPC (hex quantities, camelCase keys).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from web3.types import RPCEndpoint

from cloud.chain import LOG_SPAN_BLOCKS
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
_MAX_BATCH = 20
# Methods whose first parameter is a transaction the node executes: their gas is capped.
_GAS_CAPPED = frozenset({"eth_call", "eth_estimateGas"})
# eth_getLogs: at most this many blocks (both ends explicit), the registry's logs only, at most _MAX_LOGS of them.
MAX_LOG_BLOCKS = LOG_SPAN_BLOCKS
_MAX_LOGS = 10_000
_HEAD_TAGS = frozenset({"latest", "safe", "finalized", "pending"})


class _BadParams(ValueError):
    pass


def _block_number(value: Any, head: int, name: str) -> int:
    if isinstance(value, str) and value in _HEAD_TAGS:
        return head
    if value == "earliest":
        return 0
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise _BadParams(f"{name} must be a block number (0x-hex) or latest/safe/finalized/pending/earliest")


def _bounded_log_filter(params: list[Any], registry: str | list[str], head: int) -> list[Any]:
    """The filter of an eth_getLogs, checked: both ends given and at most MAX_LOG_BLOCKS apart (or one block by
    hash), the address the registry's, or one of its predecessors' after a migration (the only contracts this
    endpoint serves logs of; ``registry``: the current one first)."""
    if len(params) != 1 or not isinstance(params[0], dict):
        raise _BadParams("eth_getLogs takes one filter object")
    registries = [registry] if isinstance(registry, str) else list(registry)
    served = {r.lower() for r in registries}
    query = dict(params[0])
    address = query.get("address", registries[0])
    addresses = address if isinstance(address, list) else [address]
    if len(addresses) != 1 or not isinstance(addresses[0], str) or addresses[0].lower() not in served:
        raise _BadParams(f"only the registry's logs are served (address {registries[0]})")
    query["address"] = next(r for r in registries if r.lower() == addresses[0].lower())
    if "blockHash" in query:
        if "fromBlock" in query or "toBlock" in query:
            raise _BadParams("blockHash excludes fromBlock and toBlock")
        return [query]
    if "fromBlock" not in query or "toBlock" not in query:
        raise _BadParams("eth_getLogs needs an explicit fromBlock and toBlock (or a blockHash)")
    start = _block_number(query["fromBlock"], head, "fromBlock")
    end = _block_number(query["toBlock"], head, "toBlock")
    if end - start + 1 > MAX_LOG_BLOCKS:
        raise _BadParams(f"block range of {end - start + 1} exceeds {MAX_LOG_BLOCKS} blocks; query in spans")
    query["fromBlock"], query["toBlock"] = hex(start), hex(max(start, min(end, head)))
    return [query]


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


def _capped_gas(params: list[Any], cap: int) -> list[Any]:
    """``params`` with the call's gas at most ``cap`` (forced when absent); ValueError for a malformed gas."""
    if not params or not isinstance(params[0], dict):
        raise ValueError("the first parameter must be a call object")
    call = dict(params[0])
    gas = call.get("gas", cap)
    if isinstance(gas, str):
        gas = int(gas, 16) if gas.startswith(("0x", "0X")) else int(gas)
    if not isinstance(gas, int) or isinstance(gas, bool) or gas < 0:
        raise ValueError("gas must be a non-negative quantity")
    call["gas"] = hex(min(gas, cap))
    return [call, *params[1:]]


def _id_of(request: Any) -> Any:
    """The request's id if it is a valid one (a string or an integer), else None."""
    request_id = request.get("id") if isinstance(request, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


def _one(ledger: LedgerDep, request: Any) -> dict[str, Any]:
    if not isinstance(request, dict):
        return _error(None, -32600, "invalid request")
    request_id = _id_of(request)
    method, params = request.get("method"), request.get("params", [])
    if not isinstance(method, str) or not isinstance(params, list):
        return _error(request_id, -32600, "invalid request")
    if method not in SAFE_METHODS:
        return _error(request_id, -32601, f"method {method[:64]!r} is not available on this read-only endpoint")
    if method in _GAS_CAPPED:
        try:
            params = _capped_gas(params, ledger.settings.rpc_call_gas)
        except ValueError as err:
            return _error(request_id, -32602, str(err))
    w3 = ledger.chain.connect().w3
    try:
        if method == "eth_getLogs":
            (query,) = _bounded_log_filter(params, ledger.chain.registries(), int(w3.eth.block_number))
            # web3's own call, not the raw request: its formatters also speak the embedded chain's dialect
            result = w3.eth.get_logs(query)
        else:
            result = w3.manager.request_blocking(RPCEndpoint(method), params)
    except _BadParams as err:
        return _error(request_id, -32602, str(err))
    except Exception as err:  # any node-side rejection of the params: a JSON-RPC error, never a 500
        return _error(request_id, -32602, f"{type(err).__name__}: {str(err)[:200]}")
    if method == "eth_getLogs" and isinstance(result, list | tuple) and len(result) > _MAX_LOGS:
        return _error(request_id, -32005, f"more than {_MAX_LOGS} logs in this range; query a shorter span")
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
        deadline = time.monotonic() + ledger.settings.rpc_request_s
        answers = []
        for item in request:
            if time.monotonic() > deadline:
                answers.append(_error(_id_of(item), -32000, "time budget of this request exceeded; send fewer calls"))
            else:
                answers.append(_one(ledger, item))
        return JSONResponse(answers)
    return JSONResponse(_one(ledger, request))
