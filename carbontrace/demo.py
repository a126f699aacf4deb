"""`make demo`: the whole pipeline on embedded defaults, in plain steps, ending with a summary table.

Mosquitto → a fleet of virtual devices (the firmware's own application code against bus-level sensor
emulators) → the edge gateway process → the cloud process (SQLite, in-process EVM, local content store).
Then one reading and one emissions aggregate are traced, their proof bundles written and checked with
`carbontrace verify` against the chain, and tamper attempts are shown being caught. Every service is a
separate process started here and stopped at the end (or kept with --keep-running).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from carbontrace.broker_config import MqttAccess
from carbontrace.embedded_broker import BROKER_KINDS, EmbeddedBroker, describe, resolve_kind, start_broker
from carbontrace.servers import AnvilNode, CloudProcess, GatewayProcess, Mosquitto, Tenant, free_port, wait_until
from carbontrace_host.secret_files import private_dir, write_secret
from carbontrace_protocol import sealed_blob
from cloud.chain_signer import LocalKeySigner, sign_typed_document, write_key_file
from edge_gateway.keys import create_key_file
from simulators.fleet import FleetConfig, device_specs
from simulators.fleet_faults import FaultPlan

CLI = [sys.executable, "-m", "carbontrace.cli"]


def say(text: str = "") -> None:
    print(text, flush=True)  # noqa: T201 - the demo talks to a person


def step(number: int, text: str) -> None:
    say(f"\n[{number}] {text}")


class DemoError(RuntimeError):
    pass


class Api:
    """The cloud's public HTTP API, as any client would use it."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)

    def call(self, method: str, path: str, key: str | None = None, expect: int = 200, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code != expect:
            raise DemoError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


def register(
    api: Api, workdir: Path, device_keys: dict[str, str], operator_key: str
) -> tuple[Tenant, dict[str, str]]:
    """Enterprise, trading platform and their binding on chain; regulator; site, gateway and devices."""
    # Each party makes its own chain key and keeps it (0600); the cloud learns only the address.
    enterprise_chain, platform_chain = LocalKeySigner.generate(), LocalKeySigner.generate()
    write_key_file(workdir / "keys" / "enterprise-chain-key.hex", enterprise_chain, exclusive=False)
    write_key_file(workdir / "keys" / "platform-chain-key.hex", platform_chain, exclusive=False)
    enterprise = api.call("POST", "/api/v1/enterprises", expect=201,
                          json={"name": "Greenfield Dairy Co.", "chain_account": enterprise_chain.address})
    eid, ekey = enterprise["enterprise_id"], enterprise["api_key"]
    say(f"    enterprise applied: {eid} (its own chain account {enterprise['chain_account'][:12]}…), pending")
    api.call("POST", f"/api/v1/enterprises/{eid}/approve", operator_key)
    say("    operator approved the application: enterprise registered on chain")
    platform = api.call("POST", "/api/v1/platforms", operator_key, expect=201,
                        json={"name": "Regional Carbon Exchange", "chain_account": platform_chain.address})
    pid, pkey = platform["platform_id"], platform["api_key"]
    say(f"    trading platform registered: {pid}")
    request_doc = api.call("GET", f"/api/v1/enterprises/{eid}/bindings/{pid}/consent", ekey)
    requested = api.call("POST", f"/api/v1/enterprises/{eid}/bindings", ekey, expect=201,
                         json={"platform_id": pid, "signature": sign_typed_document(enterprise_chain, request_doc)})
    confirm_doc = api.call("GET", f"/api/v1/platforms/{pid}/bindings/{eid}/consent", pkey)
    confirmed = api.call("POST", f"/api/v1/platforms/{pid}/bindings/{eid}/confirm", pkey,
                         json={"signature": sign_typed_document(platform_chain, confirm_doc)})
    say(f"    binding through the contract: {requested['state']} signed by the enterprise → {confirmed['state']} "
        "signed by the platform (EIP-712, relayed by the operator)")
    regulator = api.call("POST", "/api/v1/regulators", operator_key, json={"label": "demo regulator"}, expect=201)
    engineer = api.call("POST", f"/api/v1/enterprises/{eid}/engineers", ekey, json={"label": "site engineer"},
                        expect=201)
    site_id = "dairy-barn-1"
    api.call("POST", f"/api/v1/enterprises/{eid}/sites", ekey,
             json={"site_id": site_id, "name": "Barn 1", "country": "CN"}, expect=201)
    key_file = workdir / "gateway" / "gateway.key"
    gateway_public = create_key_file(key_file, overwrite=True)
    gateway = api.call("POST", f"/api/v1/sites/{site_id}/gateways", engineer["api_key"],
                       json={"gateway_id": "gw-barn-1", "public_key": gateway_public.hex()}, expect=201)
    say(f"    site {site_id}, gateway gw-barn-1 (its own P-256 key; API key issued)")
    for device_id, public_key in device_keys.items():
        device = api.call("POST", f"/api/v1/sites/{site_id}/devices", engineer["api_key"],
                          json={"device_id": device_id, "public_key": public_key}, expect=201)
        say(f"    device {device_id}: key fingerprint {device['key_fingerprint'][:16]}… registered on chain "
            f"(tx {device['registered_tx'][:12]}…)")
    tenant = Tenant(site_id, "gw-barn-1", gateway["api_key"], key_file)
    keys = {"operator": operator_key, "enterprise": ekey, "enterprise_id": eid, "platform": pkey,
            "regulator": regulator["api_key"]}
    return tenant, keys


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def gateway_status(gateway: GatewayProcess) -> dict[str, Any]:
    out = run_cli("gateway", "status", "--config", str(gateway.config), timeout=60)
    if out.returncode != 0:
        raise DemoError(f"gateway status failed: {out.stderr[-500:]}")
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def trace(api: Api, key: str | None, **query: Any) -> dict[str, Any]:
    data: dict[str, Any] = api.call("GET", "/api/v1/trace/verify", key, params=query)
    return data


def write_bundle(api: Api, key: str | None, path: Path, **query: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = api.call("GET", "/api/v1/trace/bundle", key, params=query)
    path.write_text(json.dumps(bundle, indent=2))
    return bundle


def verify_bundle(path: Path, rpc: str, trust: Path) -> tuple[int, dict[str, Any]]:
    out = run_cli("verify", str(path), "--rpc", rpc, "--trust", str(trust), "--json", timeout=120)
    try:
        report: dict[str, Any] = json.loads(out.stdout)
    except json.JSONDecodeError:
        report = {"error": (out.stdout + out.stderr)[-500:]}
    return out.returncode, report


def tamper_bundle(source: Path, target: Path, mutate: Callable[[dict[str, Any]], None]) -> Path:
    bundle = json.loads(source.read_text())
    mutate(bundle)
    target.write_text(json.dumps(bundle, indent=2))
    return target


def flip_hex(value: str, position: int = 20) -> str:
    digit = value[position]
    return value[:position] + ("0" if digit != "0" else "1") + value[position + 1 :]


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    work = out / "run"
    private_dir(work)  # 0700: it holds keys, API keys and databases
    started = time.monotonic()
    summary: dict[str, Any] = {}
    services: list[Any] = []
    try:
        broker_name = describe(resolve_kind(args.broker))
        step(1, f"Start the MQTT broker ({broker_name} on loopback) and the cloud (SQLite, in-process EVM, local CAS)")
        broker = start_broker(work / "mqtt-broker", args.broker, log=lambda line: say(f"    {line}"))
        services.append(broker)
        chain = "embedded"
        if args.chain == "anvil":
            # A node with no unlocked accounts, mining a block a second: the cloud signs its own transactions
            # and counts a checkpoint as anchored two blocks after its transaction's.
            anvil = AnvilNode(work / "anvil", block_time_s=1)
            anvil.start()
            services.append(anvil)
            chain = anvil.url
            say(f"    chain: Anvil at {anvil.url} (--accounts 0, a block a second, confirmation depth 2)")
        cloud = CloudProcess(work / "cloud", checkpoint_every_s=args.checkpoint_s, jobs_interval_s=0.5, chain=chain)
        cloud.start()
        services.append(cloud)
        api = Api(cloud.url)
        say(f"    broker 127.0.0.1:{broker.port}; cloud {cloud.url} (API docs at {cloud.url}/docs)")

        step(2, f"Provision {args.devices} devices: each makes its own P-256 key in its flash; only the public "
                "key leaves it")
        fleet_dir = work / "fleet"
        keys_file = work / "device-keys.json"
        keys = run_cli("sim", "fleet", "--devices", str(args.devices), "--site", "dairy-barn-1", "--workdir",
                       str(fleet_dir), "--keys-out", str(keys_file), "--keys-only", "--prefix", "barn", "--seed", "7")
        if keys.returncode != 0:
            raise DemoError(f"fleet key export failed: {keys.stderr[-800:]}")
        device_keys: dict[str, str] = json.loads(keys_file.read_text())

        step(3, "Register the enterprise, a trading platform, their binding, the site, gateway and devices")
        tenant, tenant_keys = register(api, work, device_keys, cloud.operator_key)

        mqtt_gateway: MqttAccess | int = broker.port
        fleet_auth: list[str] = []
        if isinstance(broker, Mosquitto):
            # The broker's credentials, as `carbontrace provision` issues them: the gateway's, and each device's
            # (the forged device gets its own: it can publish only on its own, unregistered, topics).
            mqtt_gateway = broker.add_gateway(tenant.site_id, tenant.gateway_id)
            plan = FaultPlan(seed=7, forged_devices=1, tamper_rate=0.05)
            specs = device_specs(FleetConfig(devices=args.devices, site_id=tenant.site_id, device_prefix="barn",
                                             faults=plan, count=1))
            credentials = broker.issue_devices(tenant.site_id, [(d.name, d.device_id) for d in specs],
                                               work / "fleet-credentials.json")
            fleet_auth = ["--broker-ca", str(broker.ca_file), "--credentials", str(credentials)]
            say(f"    broker credentials: gateway {mqtt_gateway.username} and {len(specs)} devices (TLS, CA "
                f"{broker.ca_file.name}; ACLs: each device writes only its own topics, only the gateway reads)")

        step(4, "Start the edge gateway: subscribe, verify every signature, spool, batch per window, upload")
        metrics_port = free_port()
        gateway = GatewayProcess(work / "gateway", tenant, cloud.url, mqtt_gateway, window_s=args.window_s,
                                 interval_s=1, metrics_port=metrics_port)
        gateway.start()
        services.append(gateway)
        say(f"    gateway {tenant.gateway_id}: window {args.window_s} s, metrics on :{metrics_port}/metrics")

        step(5, f"Run the fleet for {args.seconds} s: signed readings over MQTT QoS 1, plus a forged device and "
                "a few tampered messages that the gateway must reject")
        report_file = work / "fleet-report.json"
        fleet = run_cli("sim", "fleet", "--devices", str(args.devices), "--site", "dairy-barn-1", "--broker",
                        f"127.0.0.1:{broker.port}", *fleet_auth, "--rate", "1", "--duration", str(args.seconds),
                        "--workdir",
                        str(fleet_dir), "--prefix", "barn", "--seed", "7", "--forged-devices", "1",
                        "--tamper-rate", "0.05", "--report", str(report_file), "--no-progress",
                        "--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics",
                        timeout=args.seconds + 120)
        if fleet.returncode != 0:
            raise DemoError(f"fleet failed: {fleet.stderr[-800:]}")
        fleet_report = json.loads(report_file.read_text())
        say(f"    fleet report: {json.dumps({k: v for k, v in fleet_report.items() if not isinstance(v, dict)})}")

        step(6, "Wait until the gateway has uploaded every batch and the cloud has anchored a checkpoint")
        waited = wait_until(lambda: _all_uploaded(gateway), 120, "the gateway's backlog to drain", interval=0.5)
        status = gateway_status(gateway)
        readings = api.call("GET", f"/api/v1/devices/{next(iter(device_keys))}/readings",
                            tenant_keys["regulator"])
        if not readings:
            raise DemoError("no reading of the first device reached the cloud")
        reading = readings[-1]
        wait_until(lambda: trace(api, tenant_keys["regulator"], device_id=reading["device_id"], types="co2",
                                 start=reading["timestamp"], end=reading["timestamp"] + 1)["status"] == "valid",
                   90, "the reading's checkpoint to be anchored", interval=1.0)
        checkpoints = api.call("GET", "/api/v1/log/checkpoints")
        say(f"    backlog drained in {waited:.1f} s; {len(checkpoints)} checkpoint(s) anchored, one transaction each")

        step(7, "Trace one reading (regulator): locate → retrieve → verify, step by step")
        query = {"device_id": reading["device_id"], "types": "co2", "start": reading["timestamp"],
                 "end": reading["timestamp"] + 1}
        answer = trace(api, tenant_keys["regulator"], **query)
        item = answer["items"][0]
        for s in item["steps"]:
            say(f"    {'ok ' if s['ok'] else 'BAD'} {s['step']:<22} {s['detail'][:80]}")
        reading_bundle = out / "reading-bundle.json"
        write_bundle(api, tenant_keys["regulator"], reading_bundle, **query)

        step(8, "Trace an emissions aggregate as the public (no key): the aggregate and its proof, no raw reading")
        aggregate_query = {"enterprise_id": tenant_keys["enterprise_id"], "types": "emissions", "limit": 1}
        public = trace(api, None, **aggregate_query)
        aggregate = public["items"][0]
        view = aggregate["view"]
        say(f"    {aggregate['device_id']}: {json.dumps(view)[:160]}")
        aggregate_bundle = out / "emissions-bundle.json"
        write_bundle(api, None, aggregate_bundle, **aggregate_query)
        raw_for_public = api.http.get(f"/api/v1/devices/{reading['device_id']}/readings").status_code

        step(9, "Verify both bundles offline with `carbontrace verify`: only the bundle and a chain node")
        rpc = f"{cloud.url}/rpc"
        # The trust anchor (chain id, registry address) is pinned once, out of band; never taken from a bundle.
        trust = out / "trust.json"
        trust.write_text(json.dumps(api.call("GET", "/api/v1/trust", None), indent=2))
        say(f"    pinned {trust.name}: {trust.read_text().strip()}")
        verdicts = {}
        for name, path in (("reading", reading_bundle), ("emissions", aggregate_bundle)):
            code, report = verify_bundle(path, rpc, trust)
            verdicts[name] = code
            say(f"    {path.name}: exit {code}, {report.get('status', report)}")
            if code != 0:
                raise DemoError(f"{path.name} did not verify: {report}")

        step(10, "Tamper attempts: each must be caught, at the right step")
        caught: dict[str, str] = {}
        missed: list[str] = []
        forged = tamper_bundle(reading_bundle, out / "tampered-leaf.json",
                               lambda b: b["items"][0].update(leaf=flip_hex(b["items"][0]["leaf"], 200)))
        code, report = verify_bundle(forged, rpc, trust)
        caught["bundle: one byte of the reading"] = f"exit {code}, failed at {report.get('failed_step')}"
        if code == 0 or report.get("failed_step") != "device_signature":
            missed.append("bundle leaf")
        forged = tamper_bundle(aggregate_bundle, out / "tampered-proof.json",
                               lambda b: b["items"][0]["batch_proof"].__setitem__(
                                   0, flip_hex(b["items"][0]["batch_proof"][0], 10)))
        code, report = verify_bundle(forged, rpc, trust)
        caught["bundle: one hash of the batch proof"] = f"exit {code}, failed at {report.get('failed_step')}"
        if code == 0 or report.get("failed_step") != "batch_inclusion":
            missed.append("bundle batch proof")
        blob_step = tamper_stored_blob(work / "cloud" / "content", item["cid"])
        answer = trace(api, tenant_keys["regulator"], **query)
        caught["content store: one byte of the stored blob"] = (
            f"trace {answer['items'][0]['status']}, failed at {answer['items'][0]['failed_step']} ({blob_step})")
        if answer["items"][0]["failed_step"] != "content_store":
            missed.append("stored blob")
        for what, verdict in caught.items():
            say(f"    {what:<44} → {verdict}")
        if missed:
            raise DemoError(f"tamper attempts not caught at the right step: {missed}")

        summary = {
            "devices": args.devices,
            "readings signed by devices": fleet_report.get("made", fleet_report.get("sent")),
            "acknowledged by broker": fleet_report.get("acked"),
            "accepted by gateway": _accepted(status),
            "rejected by gateway": _rejections(status),
            "rejections the fleet injected": ", ".join(
                f"{k} {v}" for k, v in sorted(fleet_report.get("expected", {}).items())) or "none",
            "missing readings (gaps)": status.get("missing_readings"),
            "gaps the fleet's rejected readings leave": fleet_report.get("expected_gaps"),
            "batches uploaded": status.get("acked_batches"),
            "checkpoints anchored": len(checkpoints),
            "raw readings visible to public": "no" if raw_for_public in (401, 403) else f"YES (HTTP {raw_for_public})",
            "bundles verified": ", ".join(f"{k}: exit {v}" for k, v in verdicts.items()),
            "tamper attempts caught at the right step": f"{len(caught) - len(missed)}/{len(caught)}",
            "demo time (s)": round(time.monotonic() - started, 1),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if args.keep_running:
            keep_running(cloud, broker, gateway, tenant_keys, out)
        return summary
    finally:
        for service in reversed(services):
            service.stop()


def _accepted(status: dict[str, Any]) -> int:
    return sum(int(d["accepted"]) for d in status.get("devices", {}).values())


def _rejections(status: dict[str, Any]) -> str:
    by_reason: dict[str, int] = {}
    for label, count in status.get("rejections", {}).items():
        reason = label.rsplit("/", 1)[-1]
        by_reason[reason] = by_reason.get(reason, 0) + int(count)
    return ", ".join(f"{reason} {count}" for reason, count in sorted(by_reason.items())) or "none"


def _all_uploaded(gateway: GatewayProcess) -> bool:
    status = gateway_status(gateway)
    return bool(status["unacked_batches"] == 0 and status["open_readings"] == 0 and _accepted(status) > 0)


def tamper_stored_blob(content_dir: Path, cid: str) -> str:
    matches = [p for p in content_dir.rglob("*") if p.is_file() and cid in p.name]
    if not matches:
        raise DemoError(f"blob {cid} not found under {content_dir}")
    path = matches[0]
    data = bytearray(path.read_bytes())
    start, end = sealed_blob.ciphertext_span(bytes(data))
    data[(start + end) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return f"flipped one bit of the ciphertext of sealed blob {path.name[:16]}…"


def keep_running(cloud: CloudProcess, broker: Mosquitto | EmbeddedBroker, gateway: GatewayProcess, keys: dict[str, str],
                 out: Path) -> None:
    write_secret(out / "api-keys.json", json.dumps(keys, indent=2))
    say(f"\nServices keep running (Ctrl-C stops them):\n  API docs  {cloud.url}/docs\n  console   {cloud.url}/console"
        f"\n  broker    127.0.0.1:{broker.port}\n  API keys  {out / 'api-keys.json'}")
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop:
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description="CarbonTrace: the whole pipeline on embedded defaults")
    parser.add_argument("--out", default="demo-out", help="where bundles and the summary are written")
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the fleet measures")
    parser.add_argument("--window-s", type=int, default=5, help="the gateway's batch window")
    parser.add_argument("--checkpoint-s", type=float, default=3.0, help="the cloud's checkpoint interval")
    parser.add_argument("--broker", choices=BROKER_KINDS, default="auto",
                        help="MQTT broker: Mosquitto when installed (auto), or the embedded amqtt one")
    parser.add_argument("--chain", choices=("embedded", "anvil"), default="embedded",
                        help="the in-process EVM, or an Anvil node with no unlocked accounts (npm, see README)")
    parser.add_argument("--keep-running", action="store_true", help="keep the services up to explore them")
    args = parser.parse_args()
    try:
        summary = run(args)
    except (DemoError, TimeoutError, RuntimeError) as err:
        say(f"\nDEMO FAILED: {err}")
        sys.exit(1)
    say("\nSummary")
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        say(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
