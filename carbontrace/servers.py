"""Real servers on loopback for `carbontrace bench` and `carbontrace drill`: Mosquitto, the cloud, the gateway.

Each is a separate OS process started here on a free port, so a drill can kill -9 it, stop it or restart it
exactly as an operator (or a crash) would. Tenants are registered through the cloud's public API.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from carbontrace.benchmarks.common import DeviceKey
from carbontrace.broker_config import BrokerConfig, MqttAccess, gateway_username
from carbontrace_host.logs import logging_config
from carbontrace_host.secret_files import private_dir, write_secret
from edge_gateway.keys import create_key_file

REPO_ROOT = Path(__file__).resolve().parents[1]


def stop_children_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop every server this process started."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "the condition", interval: float = 0.05
) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, raises TimeoutError naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes] | None, kill: bool = False, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class Mosquitto:
    """Mosquitto on a free loopback port with the production configuration (carbontrace/broker_config.py):
    TLS only, no anonymous access, per-client credentials and ACLs; persistence in ``workdir`` so a restart
    keeps sessions and queues. ``add_device``/``add_gateway``/``add_publisher`` issue credentials and make a
    running broker reload its password and ACL files (SIGHUP)."""

    def __init__(self, workdir: Path, port: int | None = None, fleet_size: int = 1000) -> None:
        self.workdir = workdir
        private_dir(workdir)  # the persistence database holds queued readings: 0700
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.broker_config = BrokerConfig(workdir / "broker", port=self.port, fleet_size=fleet_size,
                                          run_as_root=os.geteuid() == 0).create()
        self.config = self.broker_config.conf_file
        self.ca_file = self.broker_config.ca_file
        self.log_path = workdir / "mosquitto.log"
        self.issued: dict[tuple[str, str, str], MqttAccess] = {}

    def issue(self, username: str, role: str, site: str, **kwargs: Any) -> MqttAccess:
        """Credentials for ``username`` (the same ones again if already issued here with that role and site)."""
        workers = kwargs.get("workers", 1)
        key = (username, role if workers == 1 else f"{role}*{workers}", site)
        if key not in self.issued:
            credentials = self.broker_config.issue(username, role, site, **kwargs)
            self.reload()
            self.issued[key] = self.broker_config.access(credentials)
        return self.issued[key]

    def issue_devices(self, site: str, devices: list[tuple[str, str]], path: Path) -> Path:
        """Credentials for many devices at once ((username, device id) pairs; one reload), written to ``path``
        (0600) as the fleet simulator reads them: {username: {"username", "password"}}."""
        table: dict[str, dict[str, str]] = {}
        for username, device_id in devices:
            key = (username, "device", site)
            if key not in self.issued:
                credentials = self.broker_config.issue(username, "device", site, device=device_id)
                self.issued[key] = self.broker_config.access(credentials)
            table[username] = self.issued[key].credentials.to_json()
        self.reload()
        write_secret(path, json.dumps(table, indent=1))
        return path

    def add_device(self, site: str, device_id: str) -> MqttAccess:
        return self.issue(device_id, "device", site, device=device_id)

    def add_gateway(self, site: str, gateway_id: str, workers: int = 1) -> MqttAccess:
        return self.issue(gateway_username(gateway_id), "gateway", site, workers=workers)

    def add_publisher(self, site: str, name: str = "load-publisher") -> MqttAccess:
        return self.issue(name, "publisher", site)

    def reload(self) -> None:
        """Make a running broker take the new password and ACL files: a restart (persistence keeps every
        session and queue). Not SIGHUP: Mosquitto 2.0.11 (Debian 12) was seen to crash (SIGSEGV in the ACL
        check) on the next publish of a client connected before a SIGHUP reload of its acl_file."""
        if self.proc is not None and self.proc.poll() is None:
            self.restart()

    @staticmethod
    def binary() -> str:
        for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
            if candidate and os.path.exists(candidate):
                return candidate
        raise RuntimeError("mosquitto is not installed; run `make setup` (scripts/ensure-debs.sh)")

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary(), "-c", str(self.config)], stdout=log, stderr=log)
        wait_for_port(self.port)

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, kill)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Tenant:
    site_id: str
    gateway_id: str
    gateway_api_key: str
    gateway_key_file: Path
    enterprise_id: str = ""
    enterprise_key: str = ""
    devices: list[DeviceKey] = field(default_factory=list)


class CloudProcess:
    """The cloud API (uvicorn, cloud.app:create_app) in its own process, configured by CT_CLOUD_* variables."""

    def __init__(self, workdir: Path, database_url: str | None = None, chain: str = "embedded",
                 content_store: str = "local", checkpoint_every_s: float = 1.0, jobs_interval_s: float = 0.5,
                 checkpoint_every_batches: int = 100, confirmations: int | None = None) -> None:
        self.workdir = workdir
        private_dir(workdir)  # keys, API keys and the database: 0700
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "cloud.log"
        self.database_url = database_url or f"sqlite:///{workdir}/cloud.db"
        self.env = {
            **os.environ,
            "CT_CLOUD_DATABASE_URL": self.database_url,
            "CT_CLOUD_CHAIN": chain,
            "CT_CLOUD_CONTENT_STORE": content_store,
            "CT_CLOUD_CONTENT_DIR": str(workdir / "content"),
            "CT_CLOUD_SIGNING_KEY_FILE": str(workdir / "cloud-key.hex"),
            "CT_CLOUD_CHAIN_KEY_FILE": str(workdir / "cloud-chain-key.hex"),
            "CT_CLOUD_FUND_OPERATOR_FROM_DEV_NODE": "true",  # only development nodes are started here
            # The cloud makes the operator key at its first start and writes it here (0600): see operator_key.
            "CT_CLOUD_OPERATOR_KEY_FILE": str(workdir / "operator-api-key"),
            "CT_CLOUD_CHECKPOINT_EVERY_S": str(checkpoint_every_s),
            "CT_CLOUD_CHECKPOINT_EVERY_BATCHES": str(checkpoint_every_batches),
            "CT_CLOUD_JOBS_INTERVAL_S": str(jobs_interval_s),
            "CT_CLOUD_LEADER_LEASE_S": "5",
        }
        if confirmations is not None:
            self.env["CT_CLOUD_CONFIRMATIONS"] = str(confirmations)
        self.proc: subprocess.Popen[bytes] | None = None

    def replica(self, name: str) -> CloudProcess:
        """Another process of the same cloud (scale-out): same database, keys, content store and chain, its
        own port and log. Start it after this one (which migrates the database and deploys the registry); on
        PostgreSQL the replicas ingest at once and one of them, the advisory lock's holder, anchors. Needs a
        shared chain (a node URL): an embedded EVM lives inside one process."""
        if self.env["CT_CLOUD_CHAIN"] == "embedded":
            raise ValueError("replicas need a shared chain node, not the embedded EVM")
        other = copy.copy(self)
        other.port = free_port()
        other.url = f"http://127.0.0.1:{other.port}"
        other.log_path = self.workdir / f"cloud-{name}.log"
        other.env = dict(self.env)
        other.proc = None
        return other

    @property
    def metrics_token(self) -> str:
        """The /metrics scrape token this cloud made at its first start (next to its operator key file)."""
        return Path(self.env["CT_CLOUD_OPERATOR_KEY_FILE"]).with_name("metrics-token").read_text().strip()

    def start(self, timeout: float = 60.0) -> None:
        # The JSON log lines of `carbontrace cloud serve` (carbontrace_host/logs.py); WARNING unless CT_CLOUD_LOG_LEVEL
        # says otherwise (as before: a request line each would weigh on the benchmarks).
        log_config = self.workdir / "log-config.json"
        log_config.write_text(json.dumps(logging_config(self.env.get("CT_CLOUD_LOG_LEVEL", "WARNING"))))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "cloud.app:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-config", str(log_config), "--no-access-log"],
                cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/api/v1/log/checkpoints", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cloud did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, kill)
        self.proc = None

    @property
    def operator_key(self) -> str:
        """The operator API key this cloud made at its first start (read from its 0600 key file)."""
        return Path(self.env["CT_CLOUD_OPERATOR_KEY_FILE"]).read_text().strip()

    def pause(self) -> None:
        """SIGSTOP: the process holds its port and state but answers nothing (a hung or partitioned cloud)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def register_tenant(self, devices: int, workdir: Path, prefix: str = "bench") -> Tenant:
        """Enterprise, engineer, site, gateway and devices, all through the public API."""
        with httpx.Client(base_url=self.url, timeout=60) as http:
            def post(
                path: str, body: dict[str, str] | None, key: str | None = None, expect: int = 201
            ) -> dict[str, str]:
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                response = http.post(path, json=body, headers=headers)
                if response.status_code != expect:
                    raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
                data: dict[str, str] = response.json()
                return data

            # The enterprise's own chain key stays with the bench (unused there: no bindings), never the cloud.
            from cloud.chain_signer import LocalKeySigner

            enterprise = post("/api/v1/enterprises", {"name": f"{prefix} enterprise",
                                                      "chain_account": LocalKeySigner.generate().address})
            enterprise_id, enterprise_key = enterprise["enterprise_id"], enterprise["api_key"]
            post(f"/api/v1/enterprises/{enterprise_id}/approve", None, self.operator_key, expect=200)
            engineer_key = post(f"/api/v1/enterprises/{enterprise_id}/engineers", {"label": "eng"},
                                enterprise_key)["api_key"]
            site_id = f"{prefix}-site-{secrets.token_hex(3)}"
            post(f"/api/v1/enterprises/{enterprise_id}/sites",
                 {"site_id": site_id, "name": f"{prefix} plant", "country": "CN"}, enterprise_key)
            key_file = workdir / "gateway.key"
            gateway_public = create_key_file(key_file, overwrite=True)
            gateway_id = f"{prefix}-gw-{secrets.token_hex(3)}"
            gateway_api_key = post(f"/api/v1/sites/{site_id}/gateways",
                                   {"gateway_id": gateway_id, "public_key": gateway_public.hex()},
                                   engineer_key)["api_key"]
            tenant = Tenant(site_id, gateway_id, gateway_api_key, key_file, enterprise_id, enterprise_key)
            for n in range(devices):
                device = DeviceKey(f"{prefix}-dev-{n}-{secrets.token_hex(2)}")
                post(f"/api/v1/sites/{site_id}/devices", {"device_id": device.device_id,
                                                          "public_key": device.public.hex()}, engineer_key)
                tenant.devices.append(device)
        return tenant


class GatewayProcess:
    """`python -m edge_gateway run` in its own process; its JSON log lines go to ``workdir/gateway.log``."""

    def __init__(self, workdir: Path, tenant: Tenant, cloud_url: str, mqtt: MqttAccess | int,
                 **settings: object) -> None:
        """``mqtt``: the broker access issued to this gateway (TLS, credentials), or a bare loopback port."""
        self.workdir = workdir
        private_dir(workdir)  # keys, API keys and the database: 0700
        self.spool_path = workdir / "spool.sqlite"
        self.log_path = workdir / "gateway.log"
        values: dict[str, object] = {
            "gateway_id": tenant.gateway_id, "site_id": tenant.site_id, "cloud_url": cloud_url,
            "api_key": tenant.gateway_api_key, "key_file": str(tenant.gateway_key_file),
            "spool_path": str(self.spool_path), "window_s": 2, "interval_s": 1,
            "metrics_port": 0, "backoff_base_s": 0.2, "backoff_max_s": 1.0, "tick_s": 0.1,
            "registry_refresh_s": 3600, "upload_timeout_s": 5.0,
        }
        if isinstance(mqtt, MqttAccess):
            values.update(mqtt_host=mqtt.host, mqtt_port=mqtt.port, mqtt_ca_file=str(mqtt.ca_file),
                          mqtt_username=mqtt.username, mqtt_password=mqtt.credentials.password)
        else:
            values["mqtt_port"] = mqtt
        values.update(settings)
        self.settings = values
        self.config = workdir / "gateway.toml"
        self.write_config()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def write_config(self, **changes: object) -> None:
        """(Re)write the TOML settings; a running gateway picks them up at its next start."""
        self.settings.update(changes)
        lines = ["[gateway]"]
        for name, value in self.settings.items():
            if isinstance(value, bool):
                lines.append(f"{name} = {'true' if value else 'false'}")
            elif isinstance(value, int | float):
                lines.append(f"{name} = {value}")
            else:
                lines.append(f'{name} = "{value}"')
        write_secret(self.config, "\n".join(lines) + "\n")  # holds the API key

    def start(self, wait_subscribed: bool = True, timeout: float = 60.0) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_gateway", "run", "--config", str(self.config)],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        if wait_subscribed:
            wait_until(lambda: self.log_since_start().count('"MQTT subscribed"') > 0 or self._dead(), timeout,
                       "the gateway's MQTT subscription")
            if self._dead():
                raise RuntimeError(f"gateway exited: {self.log_since_start()[-2000:]}")

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_since_start(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(self._log_offset)
            return handle.read().decode(errors="replace")

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, kill, timeout=30)
        self.proc = None


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


class PostgresCluster:
    """A throwaway PostgreSQL 15 cluster (Debian binaries: initdb + pg_ctl) in ``workdir``, on a free port.

    Run as the `postgres` OS user when we are root (PostgreSQL refuses to run as root). ``durable=False`` (tests)
    turns fsync off and stops it with `-m immediate`: for a cluster thrown away once stopped.
    """

    def __init__(self, workdir: Path | None = None, durable: bool = True) -> None:
        # By default its own top-level temp dir: the `postgres` user must reach it (our temp dirs are 0700).
        self.workdir = workdir = workdir or Path(tempfile.mkdtemp(prefix="ct-pg-"))
        self.datadir = workdir / "data"
        self.port = free_port()
        self.durable = durable
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(workdir, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        if not postgres_available():
            raise RuntimeError("PostgreSQL 15 binaries missing: run `make setup` (scripts/ensure-debs.sh)")
        if not self.datadir.exists():
            self._run(str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-o", options, "-l",
                  str(self.workdir / "pg.log"), "-w", "-t", "30", "start")
        wait_for_port(self.port)

    def stop(self) -> None:
        mode = "fast" if self.durable else "immediate"
        subprocess.run([*self.as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"],
                       capture_output=True, timeout=60, check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def create_database(self) -> str:
        import psycopg

        name = "ct_" + secrets.token_hex(6)
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


HARDHAT_BIN = REPO_ROOT / "node_modules" / ".bin" / "hardhat"
ANVIL_BIN = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
JSIPFS_BIN = REPO_ROOT / "node_modules" / ".bin" / "jsipfs"


class HardhatNode:
    """`hardhat node` (npm hardhat@2, the repo's hardhat.config.cjs) on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "hardhat-node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        if not HARDHAT_BIN.exists():
            raise RuntimeError(f"{HARDHAT_BIN} missing: run `make setup` (npm ci)")
        # No consent prompt, so no telemetry and no error reports; it never needs the network.
        env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
               "HARDHAT_HIDE_SOLIDITY_SURVEY_MESSAGE": "true", "NO_COLOR": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(HARDHAT_BIN), "node", "--hostname", "127.0.0.1", "--port", str(self.port)], cwd=REPO_ROOT,
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        deadline = time.monotonic() + timeout
        while True:  # the port opens a moment before JSON-RPC answers
            try:
                response = httpx.post(self.url, json=body, timeout=2)
                if response.status_code == 200 and "result" in response.json():
                    return
            except (httpx.TransportError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hardhat node did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


class AnvilNode:
    """Foundry's `anvil` (npm @foundry-rs/anvil-linux-amd64) on a free loopback port with **no unlocked
    accounts** (`--accounts 0`): what a production node looks like to the cloud, which must sign its own
    transactions. Accounts get ether with `anvil_setBalance` (set_balance)."""

    def __init__(self, workdir: Path, block_time_s: float | None = None, extra_args: tuple[str, ...] = ()) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "anvil.log"
        self.block_time_s = block_time_s
        self.extra_args = extra_args  # e.g. ("--hardfork", "berlin"): a node without EIP-1559
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        if not ANVIL_BIN.exists():
            raise RuntimeError(f"{ANVIL_BIN} missing: run `make setup` (npm ci)")
        args = [str(ANVIL_BIN), "--accounts", "0", "--host", "127.0.0.1", "--port", str(self.port),
                "--chain-id", "31338"]
        if self.block_time_s is not None:
            args += ["--block-time", str(self.block_time_s)]
        args += list(self.extra_args)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if "result" in self.rpc("eth_chainId", []):
                    return
            except (httpx.TransportError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"anvil did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def rpc(self, method: str, params: list[object]) -> dict[str, object]:
        response = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                              timeout=5)
        return response.json()  # type: ignore[no-any-return]

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", [address, hex(wei)])

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


class TcpProxy:
    """A loopback TCP forwarder. Stopping it makes what is behind it unreachable, as a dead node is, while
    the node keeps its state (a Hardhat node forgets its chain when it really stops)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._connections.clear()


class IpfsDaemon:
    """A js-ipfs daemon (npm ipfs@0.66.1, Kubo RPC API), offline, on loopback ports of its own."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.repo = workdir / "repo"
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.log_path = workdir / "ipfs.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "IPFS_PATH": str(self.repo)}

    def init(self) -> None:
        import json

        if not JSIPFS_BIN.exists():
            raise RuntimeError(f"{JSIPFS_BIN} missing: run `make setup` (npm ci)")
        subprocess.run([str(JSIPFS_BIN), "init", "--emptyRepo"], env=self.env, check=True, capture_output=True,
                       timeout=120)
        config_path = self.repo / "config"
        config = json.loads(config_path.read_text())
        config["Addresses"].update(API=f"/ip4/127.0.0.1/tcp/{self.api_port}",
                                   Gateway=f"/ip4/127.0.0.1/tcp/{free_port()}",
                                   RPC=f"/ip4/127.0.0.1/tcp/{free_port()}", Swarm=[], Delegates=[])
        config["Bootstrap"] = []
        config["Discovery"] = {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}}
        config_path.write_text(json.dumps(config))

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(JSIPFS_BIN), "daemon", "--offline", "--enable-preload=false"],
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.post(f"{self.url}/api/v0/version", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"js-ipfs did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        # js-ipfs leaves its repo lock behind when stopped mid-write; a restart must not trip over it.
        (self.repo / "repo.lock").unlink(missing_ok=True)
