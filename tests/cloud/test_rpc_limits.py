"""Issue 13, item 5: /rpc cannot be made to burn the node's CPU. eth_call ran to the block gas limit (~30M on
the embedded EVM: 5-8 s of CPU for one call, batches of 50); now its gas is capped (rpc_call_gas, forced when
absent or larger) and a batch stops after rpc_request_s. Two contracts are deployed straight onto the embedded
chain for the test: one returns the gas it was given (the GAS opcode), one loops forever."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud.settings import Settings

# Init code returning the runtime ``GAS PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN`` (answers the gas left).
GAS_REPORTER = "0x685a60005260206000f3600052600960" "17" "f3"
# Init code returning the runtime ``JUMPDEST PUSH1 0 JUMP`` (a loop that ends only when the gas does).
LOOP = "0x635b600056600052600460" + "1c" + "f3"
CAP = Settings().rpc_call_gas


def _deploy(client: TestClient, init_code: str) -> str:
    w3 = client.app.state.ledger.chain.connect().w3  # type: ignore[attr-defined]
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": init_code, "gas": 200_000})
    address: str = w3.eth.get_transaction_receipt(tx)["contractAddress"]
    assert len(w3.eth.get_code(address)) > 0
    return address


def _call(address: str, gas: int | str | None, request_id: int = 1) -> dict[str, Any]:
    call: dict[str, Any] = {"to": address, "data": "0x"}
    if gas is not None:
        call["gas"] = gas
    return {"jsonrpc": "2.0", "id": request_id, "method": "eth_call", "params": [call, "latest"]}


def test_eth_call_gas_is_capped_when_absent_or_larger(sqlite_client: TestClient) -> None:
    reporter = _deploy(sqlite_client, GAS_REPORTER)
    for gas in (None, hex(30_000_000), 2**200, hex(CAP + 1)):
        answer = sqlite_client.post("/rpc", json=_call(reporter, gas)).json()
        given = int(answer["result"], 16)
        assert 0 < given <= CAP, (gas, given)
    small = int(sqlite_client.post("/rpc", json=_call(reporter, hex(100_000))).json()["result"], 16)
    assert small == 100_000 - 21_000 - 2  # a smaller gas is kept (less the intrinsic 21,000 and GAS itself)


def test_malformed_gas_is_a_json_rpc_error(sqlite_client: TestClient) -> None:
    reporter = _deploy(sqlite_client, GAS_REPORTER)
    for gas in ("0xzz", -1, True, "1" * 5000):
        answer = sqlite_client.post("/rpc", json=_call(reporter, gas))
        assert answer.status_code == 200 and answer.json()["error"]["code"] == -32602, (gas, answer.text)


def test_a_loop_runs_out_of_the_capped_gas_and_a_batch_of_them_is_cut(sqlite_client: TestClient) -> None:
    loop = _deploy(sqlite_client, LOOP)
    started = time.perf_counter()
    answer = sqlite_client.post("/rpc", json=_call(loop, hex(30_000_000))).json()
    one_call = time.perf_counter() - started
    assert "gas" in answer["error"]["message"].lower()
    budget = Settings().rpc_request_s
    started = time.perf_counter()
    answers = sqlite_client.post("/rpc", json=[_call(loop, None, i) for i in range(20)]).json()
    elapsed = time.perf_counter() - started
    assert [a["id"] for a in answers] == list(range(20))
    cut = [a for a in answers if a["error"]["code"] == -32000]
    assert cut, f"20 loop calls ran in {elapsed:.1f} s without hitting the {budget} s budget (one: {one_call:.2f} s)"
    assert elapsed < budget + 3 * one_call + 1, (elapsed, one_call)
    too_many = sqlite_client.post("/rpc", json=[_call(loop, None, i) for i in range(21)]).json()
    assert too_many["error"]["code"] == -32600


def _logs(client: TestClient, query: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "eth_getLogs", "params": [query]}
    r = client.post("/rpc", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


MAX_LOG_BLOCKS = 10_000  # cloud.routers.rpc.MAX_LOG_BLOCKS


def test_eth_get_logs_is_bounded_in_range_address_and_size(sqlite_client: TestClient) -> None:
    """A public eth_getLogs over any range and address made the node scan its whole history per call."""
    ledger = sqlite_client.app.state.ledger  # type: ignore[attr-defined]
    registry = ledger.chain.registry().address
    head = int(ledger.chain.connect().w3.eth.block_number)
    huge = _logs(sqlite_client, {"address": registry, "fromBlock": "0x0", "toBlock": hex(10**12)})
    assert "result" not in huge and huge["error"]["code"] == -32602
    assert "exceeds" in huge["error"]["message"] or "range" in huge["error"]["message"]
    start = max(0, head + 5 - MAX_LOG_BLOCKS - 1)
    wide = _logs(sqlite_client, {"address": registry, "fromBlock": hex(start), "toBlock": hex(start + MAX_LOG_BLOCKS)})
    assert wide["error"]["code"] == -32602, wide
    for query in (
        {"address": registry},  # no range at all: the node's default is its whole history for some nodes
        {"address": registry, "fromBlock": "0x0"},
        {"address": registry, "fromBlock": "0x0", "toBlock": "somewhere"},
        {"fromBlock": "0x0", "toBlock": "latest", "address": "0x" + "11" * 20},  # another contract's logs
        {"fromBlock": "0x0", "toBlock": "latest", "address": [registry, "0x" + "11" * 20]},
    ):
        answer = _logs(sqlite_client, query)
        assert answer["error"]["code"] == -32602, (query, answer)
    # Normal use, as the verifier's reader does: the registry, from 0 (or a number) to latest.
    ok = _logs(sqlite_client, {"address": registry, "fromBlock": "0x0", "toBlock": "latest"})
    assert isinstance(ok["result"], list) and ok["result"], ok  # the deployment registered the cloud's key
    assert all(log["address"].lower() == registry.lower() for log in ok["result"])
    default_address = _logs(sqlite_client, {"fromBlock": "earliest", "toBlock": "latest"})
    assert default_address["result"] == ok["result"]


def test_eth_get_logs_answers_an_error_past_the_log_count_cap(
    sqlite_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloud.routers import rpc

    registry = sqlite_client.app.state.ledger.chain.registry().address  # type: ignore[attr-defined]
    query = {"address": registry, "fromBlock": "0x0", "toBlock": "latest"}
    assert len(_logs(sqlite_client, query)["result"]) >= 2
    monkeypatch.setattr(rpc, "_MAX_LOGS", 1)
    answer = _logs(sqlite_client, query)
    assert "result" not in answer and answer["error"]["code"] == -32005, answer
