"""The production MQTT broker configuration, generated in one place: TLS, credentials, ACLs, limits.

One directory holds everything Mosquitto (2.0) needs, written by this module only:

- ``pki/ca.pem``: a CA the project creates (P-256, offline, ``cryptography``); the gateway and the devices pin
  it. Its private key is *not* here: it lives in the CA directory beside the broker's (``<dir>-ca/ca.key``, or
  ``ca_dir``), which never goes to the broker host (the broker, and whoever takes it over, could otherwise
  mint certificates every client trusts). ``pki/server.pem`` + ``pki/server.key``: the broker's certificate
  for its host names and addresses. Keys are 0600 in a 0700 directory.
- ``passwd``: one line per client, ``username:$7$iterations$salt$hash`` (PBKDF2-SHA512, Mosquitto's own
  format, written here so issuing a credential needs no ``mosquitto_passwd`` binary); ``principals.json``
  records each client's role and site (never a password).
- ``acl``: explicit per-client lines built from ``carbontrace_protocol.topics``: a device may write its own
  reading and status topics and read nothing; a site's gateway may read its site's readings and statuses;
  nobody else may read anything.
- ``mosquitto.conf``: no anonymous access, one TLS listener (no plain one), ``use_username_as_clientid`` (a
  client's id *is* its authenticated username, so connecting with the gateway's id without the gateway's
  password is refused and cannot kick the gateway off), ``max_packet_size`` from the protocol's largest
  message, ``max_queued_messages`` for the whole fleet's outboxes, persistence on disk.

Why username/password rather than client certificates: the device's MQTT client stays the small one it is
(MicroPython's ``ssl``/``tls`` wraps the socket with only the CA; no second key pair, certificate signing
request or expiry to manage on a microcontroller besides its signing key), and one file lists every
credential and can be revoked by removing a line (SIGHUP reloads it). Any MQTT 3.1.1+ broker with password
and per-user topic ACLs can take the same principals (README, "Broker in production").
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbontrace_host.secret_files import write_secret
from carbontrace_protocol import topics
from carbontrace_protocol.reading import valid_device_id

ROLES = ("device", "gateway", "publisher", "test")
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$
SALT_BYTES = 12
DEFAULT_HOSTS = ("localhost", "127.0.0.1")

# Largest packet the broker takes: a publish of the largest message on the longest topic, or a CONNECT with a
# will of that size; fixed header, ids, username, password and client id fit in the margin.
PACKET_MARGIN_BYTES = 512
MAX_PACKET_BYTES = topics.MAX_PAYLOAD_BYTES + topics.MAX_TOPIC_BYTES + PACKET_MARGIN_BYTES


def outbox_capacity() -> int:
    """Readings one device's flash outbox holds with the firmware's default budget (firmware/.../outbox.py)."""
    from simulators import firmware_path

    firmware_path.ensure()
    from carbontrace_device.outbox import DEFAULT_BUDGET_BYTES, capacity_for_budget

    return int(capacity_for_budget(DEFAULT_BUDGET_BYTES))


def max_queued_for(fleet_size: int) -> int:
    """The gateway's queue on the broker holds every device's full outbox: a gateway outage then loses nothing
    that the devices would not have kept themselves (they drop a reading from flash once the broker acks it)."""
    return max(1, fleet_size) * outbox_capacity()


def password_hash(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2's ``$7$`` password hash: PBKDF2-HMAC-SHA512, base64 salt and digest."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def to_json(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True)
class MqttAccess:
    """Everything a client needs to reach the broker: address, pinned CA, its credentials."""

    host: str
    port: int
    ca_file: Path
    credentials: Credentials

    @property
    def username(self) -> str:
        return self.credentials.username

    def paho(self, clean_session: bool = True, **kwargs: Any) -> Any:
        """A paho client with TLS (this CA only, host name checked) and the credentials; its client id is
        the username, the only one the broker accepts for it."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.username, clean_session=clean_session,
                             **kwargs)
        client.tls_set_context(client_tls_context(self.ca_file))
        client.username_pw_set(self.username, self.credentials.password)
        return client


def client_tls_context(ca_file: Path) -> Any:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _write_private(path: Path, data: bytes) -> None:
    write_secret(path, data)  # 0600 in a 0700 directory (carbontrace_host/secret_files.py, the one writer)


def default_ca_dir(directory: Path) -> Path:
    """Where the CA key of the broker directory ``directory`` goes: beside it, never inside."""
    return directory.parent / f"{directory.name}-ca"


def make_ca_and_server_cert(pki: Path, hosts: Iterable[str] = DEFAULT_HOSTS, ca_dir: Path | None = None) -> None:
    """A P-256 CA and a server certificate for ``hosts`` (DNS names and IP addresses), unless present. The
    certificates and the server key go to ``pki``, the CA's key (and a copy of its certificate) to ``ca_dir``
    (default: beside ``pki``), so the directory the broker reads holds no CA private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if (pki / "ca.pem").exists() and (pki / "server.pem").exists():
        return
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(pki, 0o700)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CarbonTrace broker CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, next(iter(hosts), "localhost"))]))
        .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_dir = ca_dir or default_ca_dir(pki)
    _write_private(ca_dir / "ca.key", pem_key(ca_key))
    (ca_dir / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pki / "server.key", pem_key(server_key))
    (pki / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (pki / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Principal:
    role: str
    site: str
    hash: str
    device: str = ""
    topics: list[str] = field(default_factory=list)  # role "test" only: extra readwrite topics

    def acl_lines(self) -> list[str]:
        if self.role == "device":
            return [f"topic write {topics.reading_topic(self.site, self.device)}",
                    f"topic write {topics.status_topic(self.site, self.device)}",
                    f"topic write {topics.flux_topic(self.site, self.device)}"]
        if self.role == "gateway":
            return [f"topic read {topics.site_readings(self.site)}", f"topic read {topics.site_statuses(self.site)}",
                    f"topic read {topics.site_fluxes(self.site)}"]
        if self.role == "publisher":  # a load generator speaking for every device of a site (bench, drills)
            return [f"topic write {topics.site_readings(self.site)}", f"topic write {topics.site_fluxes(self.site)}"]
        return [f"topic readwrite {topic}" for topic in self.topics]


class BrokerConfig:
    """The broker's configuration directory: create it, issue and revoke credentials, render the files."""

    def __init__(self, directory: Path, port: int = 8883, bind: str = "127.0.0.1",
                 hosts: Iterable[str] = DEFAULT_HOSTS, fleet_size: int = 100, run_as_root: bool = False,
                 ca_dir: Path | None = None) -> None:
        self.directory = directory
        # The CA's private key: outside the directory the broker reads (and that is chowned to mosquitto).
        self.ca_dir = ca_dir or default_ca_dir(directory)
        self.port = port
        self.bind = bind
        self.hosts = tuple(hosts)
        self.fleet_size = fleet_size
        self.run_as_root = run_as_root
        self.pki = directory / "pki"
        self.ca_file = self.pki / "ca.pem"
        self.conf_file = directory / "mosquitto.conf"
        self.passwd_file = directory / "passwd"
        self.acl_file = directory / "acl"
        self.principals_file = directory / "principals.json"
        self.data_dir = directory / "data"

    # -- files --------------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path) -> BrokerConfig:
        """The configuration `create` made in ``directory`` (its listener settings from broker.json)."""
        settings = json.loads((directory / "broker.json").read_text())
        ca_dir = settings.get("ca_dir")
        return cls(directory, port=settings["port"], bind=settings["bind"], hosts=settings["hosts"],
                   fleet_size=settings["fleet_size"], run_as_root=settings["run_as_root"],
                   ca_dir=Path(ca_dir) if ca_dir else None)

    def create(self) -> BrokerConfig:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        (self.directory / "broker.json").write_text(json.dumps(
            {"port": self.port, "bind": self.bind, "hosts": list(self.hosts), "fleet_size": self.fleet_size,
             "run_as_root": self.run_as_root, "ca_dir": str(self.ca_dir)}, indent=1))
        self.data_dir.mkdir(exist_ok=True, mode=0o700)
        old_ca_key = self.pki / "ca.key"  # the layout before: the CA key inside the broker's directory
        if old_ca_key.exists():
            if not (self.ca_dir / "ca.key").exists():
                write_secret(self.ca_dir / "ca.key", old_ca_key.read_bytes())
            old_ca_key.unlink()
        make_ca_and_server_cert(self.pki, self.hosts, self.ca_dir)
        self.render()
        return self

    def principals(self) -> dict[str, Principal]:
        if not self.principals_file.exists():
            return {}
        raw: dict[str, dict[str, Any]] = json.loads(self.principals_file.read_text())
        return {name: Principal(**entry) for name, entry in raw.items()}

    def _save(self, principals: dict[str, Principal]) -> None:
        data = {name: vars(p) for name, p in sorted(principals.items())}
        _write_private(self.principals_file, json.dumps(data, indent=1).encode())
        self.render(principals)

    def render(self, principals: dict[str, Principal] | None = None) -> None:
        principals = self.principals() if principals is None else principals
        _write_private(self.passwd_file, "".join(f"{n}:{p.hash}\n" for n, p in sorted(principals.items())).encode())
        acl = ["# generated by carbontrace/broker_config.py from carbontrace_protocol.topics; do not edit",
               "# no lines before the first `user`: a client without a line here reads and writes nothing"]
        for name, principal in sorted(principals.items()):
            acl += ["", f"user {name}", *principal.acl_lines()]
        _write_private(self.acl_file, ("\n".join(acl) + "\n").encode())
        _write_private(self.conf_file, self.mosquitto_conf().encode())

    def mosquitto_conf(self) -> str:
        lines = [
            "# generated by carbontrace/broker_config.py; regenerate instead of editing",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.passwd_file}",
            f"acl_file {self.acl_file}",
            f"max_packet_size {MAX_PACKET_BYTES}",
            f"max_queued_messages {max_queued_for(self.fleet_size)}",
            f"max_queued_bytes {max_queued_for(self.fleet_size) * (topics.MAX_PAYLOAD_BYTES + topics.MAX_TOPIC_BYTES)}",
            "max_inflight_messages 100",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
            f"listener {self.port} {self.bind}",
            "protocol mqtt",
            f"cafile {self.ca_file}",
            f"certfile {self.pki / 'server.pem'}",
            f"keyfile {self.pki / 'server.key'}",
            "tls_version tlsv1.2",
            "require_certificate false",
            "use_username_as_clientid true",
        ]
        if self.run_as_root:
            # Started as root, Mosquitto drops to the `mosquitto` user, which cannot read these 0600 files nor
            # save into a 0700 directory. A production install chowns the directory to that user instead.
            lines.insert(1, "user root")
        return "\n".join(lines) + "\n"

    # -- credentials --------------------------------------------------------------------------------

    def issue(self, username: str, role: str, site: str, device: str = "",
              extra_topics: Iterable[str] = (), workers: int = 1) -> Credentials:
        """A new password for ``username`` (replacing any earlier one); the files are rewritten. A gateway
        with ``workers`` > 1 ingest processes gets a principal per worker (topics.worker_name), the same role,
        site and password: one party and one secret, but a client id each, as the broker binds client id to
        username."""
        if role not in ROLES:
            raise ValueError(f"unknown broker role {role!r}; one of {ROLES}")
        for name in (username, site) + ((device,) if device else ()):
            if not valid_device_id(name):
                raise ValueError(f"{name!r} is not a valid MQTT principal name (1-64 of [A-Za-z0-9-._])")
        password = secrets.token_urlsafe(24)
        principals = self.principals()
        earlier = principals.get(username)
        if earlier is not None and (earlier.role, earlier.site) != (role, site):
            raise ValueError(f"MQTT user {username!r} is already a {earlier.role} of site {earlier.site!r}")
        if workers < 1 or (workers > 1 and role != "gateway"):
            raise ValueError("only a gateway has ingest workers, at least one")
        for worker in range(workers):
            name = topics.worker_name(username, worker)
            principals[name] = Principal(role, site, password_hash(password), device, list(extra_topics))
        self._save(principals)
        return Credentials(username, password)

    def add_device(self, site: str, device_id: str) -> Credentials:
        return self.issue(device_id, "device", site, device=device_id)

    def add_gateway(self, site: str, gateway_id: str, workers: int = 1) -> Credentials:
        return self.issue(gateway_username(gateway_id), "gateway", site, workers=workers)

    def add_publisher(self, site: str, name: str) -> Credentials:
        return self.issue(name, "publisher", site)

    def revoke(self, username: str) -> bool:
        """Remove ``username`` and, for a gateway, every ingest worker principal issued with it."""
        principals = self.principals()
        revoked = principals.pop(username, None)
        if revoked is None:
            return False
        if revoked.role == "gateway":
            for name in [n for n, p in principals.items() if p.role == "gateway" and p.site == revoked.site]:
                if any(name == topics.worker_name(username, k) for k in range(1, topics.MAX_INGEST_WORKERS + 1)):
                    del principals[name]
        self._save(principals)
        return True

    def access(self, credentials: Credentials, host: str = "127.0.0.1") -> MqttAccess:
        return MqttAccess(host, self.port, self.ca_file, credentials)


def gateway_username(gateway_id: str) -> str:
    """The gateway's MQTT username, which is also its client id (``use_username_as_clientid``)."""
    return f"gw-{gateway_id}"[:64]
