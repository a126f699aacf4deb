"""Provisioning plans: the ordered steps that set up a device or a gateway, built by pure functions.

A plan is data. ``provision_runner`` executes it for real or as a dry run, so both modes walk the very same
steps, and tests inspect a plan without a board, a cloud or root. Every step says where its effect lands:

- ``local``: only files under the operator's ``--out`` directory (and the firmware build); runs in both modes.
- ``board``: an ``mpremote`` command on the board; the dry run records it instead.
- ``cloud``: an HTTP call to the cloud; the dry run prints it instead.
- ``system``: a change to this computer outside ``--out`` (install, systemctl); the dry run prints it.

The device key is made ON the device by the firmware's own ``keystore.DeviceKey`` and only its public
key is printed back: no step of a device plan reads the key file or copies anything off the board.

Key rotation (``--rotate``, ``device_rotation_plan`` / ``gateway_rotation_plan``) keeps the device or gateway id:
the new key is made where the old one lives (on the board; in the gateway's staging directory), kept beside the
old one as a *pending* key until the cloud has revoked the old key and registered the new one on chain, and
only then put in the old key's place. A rotation that failed half-way is finished by running it again: the
pending key is reused, never replaced, and the cloud's rotate endpoint is safe to repeat.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_firmware.py"
FIRMWARE_DIR = REPO_ROOT / "firmware"
GATEWAY_UNIT = REPO_ROOT / "edge_gateway" / "carbontrace-gateway.service"

Effect = Literal["local", "board", "cloud", "system"]
Board = Literal["esp32", "picow"]

# The firmware's defaults (firmware/carbontrace_device/config_defaults.py) are ESP32 DevKitC pins. A Pico W
# needs its own; hardware/wiring-picow.md draws these. GP15 for S0 keeps it off the I2C pins (GP4/GP5).
BOARD_PINS: dict[str, dict[str, int]] = {
    "esp32": {"i2c_id": 0, "i2c_scl": 22, "i2c_sda": 21, "uart_id": 1, "uart_tx": 17, "uart_rx": 16, "s0_pin": 4},
    "picow": {"i2c_id": 0, "i2c_scl": 5, "i2c_sda": 4, "uart_id": 0, "uart_tx": 0, "uart_rx": 1, "s0_pin": 15},
}

# Where things go on the board (see firmware/README.md "Flashing and installing").
BOARD_PACKAGES = ("carbontrace_device", "carbontrace_protocol")
BOARD_SCRIPTS = ("boot.py", "main.py")
BOARD_CONFIG_PATH = "/data/config.json"
BROKER_CA_FILE = "broker-ca.pem"  # on the board's /data, named by the settings' broker_ca
PUBKEY_MARKER = "CT-PUBKEY"

# Runs on the board (MicroPython) before the copy. It removes /main.py first: a board that was running the app
# has a hardware watchdog that cannot be stopped, and if it fires during provisioning the board must come
# back to the REPL, not into the old app (main.py is copied again as the last step). It drops the old
# packages so stale .mpy files of deleted modules cannot linger, and makes /lib and /data. It touches
# nothing under /data: the device key stays.
PREPARE_SNIPPET = """import os
def _rm(p):
    try:
        st = os.stat(p)
    except OSError:
        return
    if st[0] & 0x4000:
        for n in os.listdir(p):
            _rm(p + '/' + n)
        os.rmdir(p)
    else:
        os.remove(p)
for p in ('/main.py', '/lib/carbontrace_device', '/lib/carbontrace_protocol'):
    _rm(p)
for d in ('/lib', '/data'):
    try:
        os.mkdir(d)
    except OSError:
        pass
"""

# Runs on the board: the firmware's keystore makes the key from the hardware RNG on first use (or loads the
# existing one) and this prints ONLY the public key. DeviceKey has no method that returns the private key.
KEYGEN_SNIPPET = """from carbontrace_device.ports.board import BoardPort
from carbontrace_device.keystore import DeviceKey
k = DeviceKey(BoardPort())
print('CT-PUBKEY', k.public_key_hex(), 'new' if k.created else 'existing')
"""


# Runs on the board for a rotation: makes the pending key (device_key.next.bin) from the hardware RNG, or loads
# the one an earlier, unfinished rotation made, and prints ONLY its public key. The current key stays in use
# until the promote snippet below; a board without a current key has nothing to rotate.
PENDING_KEY_FILE = "device_key.next.bin"
ROTATE_KEYGEN_SNIPPET = f"""from carbontrace_device.ports.board import BoardPort
from carbontrace_device.keystore import DeviceKey, KEY_FILE
p = BoardPort()
if p.flash.read(KEY_FILE) is None:
    raise OSError('no device key on this board: provision it first, there is nothing to rotate')
k = DeviceKey(p, '{PENDING_KEY_FILE}')
print('{PUBKEY_MARKER}', k.public_key_hex(), 'new' if k.created else 'existing')
"""

# Runs on the board once the cloud has the new key: the pending key replaces the current one (an atomic rename;
# the old key is gone from the board) and the key the firmware will now load is printed, so the runner can
# check it is the registered one. Without a pending key (promoted by an earlier attempt) it only prints.
PROMOTE_SNIPPET = f"""from carbontrace_device.ports.board import BoardPort
from carbontrace_device.keystore import DeviceKey, KEY_FILE
p = BoardPort()
if p.flash.read('{PENDING_KEY_FILE}') is not None:
    p.flash.replace('{PENDING_KEY_FILE}', KEY_FILE)
print('{PUBKEY_MARKER}', DeviceKey(p).public_key_hex(), 'existing')
"""


@dataclass(frozen=True)
class LocalCommand:
    """A command on this computer whose output stays under --out (the firmware build)."""

    argv: tuple[str, ...]
    purpose: str
    effect: Effect = "local"


@dataclass(frozen=True)
class WriteJson:
    """A JSON file under --out; ``from_context`` names values the runner fills in from earlier steps."""

    path: Path
    content: dict[str, Any]
    purpose: str
    mode: int = 0o600  # device records and settings stay the operator's (carbontrace_host/secret_files.py)
    from_context: tuple[str, ...] = ()
    effect: Effect = "local"


@dataclass(frozen=True)
class Mpremote:
    """One ``mpremote connect PORT …`` invocation. ``copies`` are the local sources it sends to the board."""

    port: str
    args: tuple[str, ...]
    purpose: str
    copies: tuple[Path, ...] = ()
    effect: Effect = "board"

    def argv(self, mpremote: tuple[str, ...]) -> list[str]:
        return [*mpremote, "connect", self.port, *self.args]


@dataclass(frozen=True)
class ReadDevicePublicKey:
    """Run the keygen snippet on the board and keep the public key it prints (context ``public_key``)."""

    port: str
    snippet: str
    purpose: str = "generate the device key on the board (hardware RNG) and read back its public key only"
    effect: Effect = "board"

    def mpremote(self) -> Mpremote:
        return Mpremote(self.port, ("exec", self.snippet), self.purpose)


@dataclass(frozen=True)
class RegisterDevice:
    cloud_url: str
    site_id: str
    device_id: str
    purpose: str = "register the device's public key with the cloud under its site"
    effect: Effect = "cloud"


@dataclass(frozen=True)
class RotateDeviceKey:
    """POST the pending key (context ``public_key``) to the cloud's device rotate endpoint."""

    cloud_url: str
    device_id: str
    purpose: str = "rotate the device key in the cloud: revoke the old key and register the new one on chain"
    effect: Effect = "cloud"


@dataclass(frozen=True)
class PromoteDeviceKey:
    """Put the pending key in the current key's place on the board; checks the board now holds context
    ``public_key`` (the key the cloud registered)."""

    port: str
    snippet: str = PROMOTE_SNIPPET
    purpose: str = "make the new key the device's key on the board (the old key is deleted from the board)"
    effect: Effect = "board"

    def mpremote(self) -> Mpremote:
        return Mpremote(self.port, ("exec", self.snippet), self.purpose)


@dataclass(frozen=True)
class CreateGatewayKey:
    """The gateway's P-256 key file (edge_gateway.keys), mode 0600; its public key goes to the context."""

    path: Path
    purpose: str = "generate the gateway's P-256 key"
    effect: Effect = "local"


@dataclass(frozen=True)
class RegisterGateway:
    cloud_url: str
    site_id: str
    gateway_id: str
    purpose: str = "register the gateway's public key with the cloud; the cloud returns the gateway's API key"
    effect: Effect = "cloud"


@dataclass(frozen=True)
class RotateGatewayKey:
    """POST the pending gateway key (context ``public_key``) to the cloud's gateway rotate endpoint."""

    cloud_url: str
    gateway_id: str
    purpose: str = "rotate the gateway key in the cloud: revoke the old key and register the new one on chain"
    effect: Effect = "cloud"


@dataclass(frozen=True)
class WriteGatewayConfig:
    """gateway.toml (edge_gateway.config format) with the API key from the registration (context ``api_key``)."""

    path: Path
    settings: dict[str, Any]
    purpose: str = "write the gateway settings with the API key the cloud returned"
    mode: int = 0o600  # holds the gateway's API key
    effect: Effect = "local"


@dataclass(frozen=True)
class IssueBrokerCredentials:
    """Issue a device's (or, with role "gateway", a gateway's) broker credentials in the broker configuration
    ``broker_dir`` (carbontrace/broker_config.py); the runner puts them in its context for the settings file:
    broker_user/broker_password (device), mqtt_username/mqtt_password (gateway)."""

    broker_dir: Path
    site_id: str
    device_id: str  # or the gateway id
    purpose: str
    effect: Effect = "local"
    role: str = "device"


@dataclass(frozen=True)
class CopyFile:
    source: Path
    dest: Path
    purpose: str
    effect: Effect = "local"


@dataclass(frozen=True)
class SystemCommand:
    argv: tuple[str, ...]
    purpose: str
    ok_codes: tuple[int, ...] = (0,)
    effect: Effect = "system"


Step = (
    LocalCommand
    | WriteJson
    | Mpremote
    | ReadDevicePublicKey
    | RegisterDevice
    | RotateDeviceKey
    | PromoteDeviceKey
    | CreateGatewayKey
    | RegisterGateway
    | RotateGatewayKey
    | WriteGatewayConfig
    | CopyFile
    | SystemCommand
    | IssueBrokerCredentials
)


@dataclass(frozen=True)
class DeviceRequest:
    port: str
    cloud_url: str
    site_id: str
    device_id: str
    out_dir: Path
    board: Board = "esp32"
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    broker: str | None = None  # host:port
    broker_config: Path | None = None  # the broker configuration directory: issue credentials, pin its CA
    meter: str = "pzem"
    co2_sensor: str = "scd4x"
    python: str = field(default=sys.executable)


def parse_broker(value: str) -> tuple[str, int]:
    """``host:port`` (port defaults to 1883); an IPv6 literal goes in brackets: ``[fd00::2]:1883``."""
    host, sep, port_text = value.rpartition(":")
    if not sep or (value.startswith("[") and not host.endswith("]")):
        host, port_text = value, "1883"
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"broker must be host:port, got {value!r}")
    return host, int(port_text)


def device_settings(request: DeviceRequest) -> dict[str, Any]:
    """The /data/config.json overrides (firmware/carbontrace_device/config.py format) for this device."""
    settings: dict[str, Any] = {"site_id": request.site_id, "device_id": request.device_id}
    settings.update(BOARD_PINS[request.board])
    settings["meter"] = request.meter
    settings["co2_sensor"] = request.co2_sensor
    if request.wifi_ssid is not None:
        settings["wifi_ssid"] = request.wifi_ssid
    if request.wifi_password is not None:
        settings["wifi_password"] = request.wifi_password
    if request.broker is not None:
        settings["broker_host"], settings["broker_port"] = parse_broker(request.broker)
    if request.broker_config is not None:
        settings["broker_ca"] = BROKER_CA_FILE
    return settings


def device_plan(request: DeviceRequest) -> list[Step]:
    """Build, copy, configure, make the key on the board, register its public key, install main.py, restart."""
    out = request.out_dir
    build_dir = out / "firmware"
    config_file = out / "config.json"
    port = request.port
    packages = tuple(build_dir / "lib" / name for name in BOARD_PACKAGES)
    # The build copies the board scripts that exist in firmware/ (main.py; boot.py if someone adds one).
    scripts = [name for name in BOARD_SCRIPTS if (FIRMWARE_DIR / name).is_file()]
    broker_steps: list[Step] = []
    ca_steps: list[Step] = []
    if request.broker_config is not None:
        ca = request.broker_config / "pki" / "ca.pem"
        broker_steps = [
            IssueBrokerCredentials(request.broker_config, request.site_id, request.device_id,
                                   f"issue the device's MQTT credentials in {request.broker_config} (its own topics "
                                   "only; restart the broker to load them)"),
        ]
        ca_steps = [
            Mpremote(port, ("fs", "cp", str(ca), ":/data/" + BROKER_CA_FILE),
                     "copy the broker's CA to /data (TLS to the broker, that CA pinned)", copies=(ca,)),
        ]
    return [
        *broker_steps,
        LocalCommand(
            (request.python, str(BUILD_SCRIPT), "--out", str(build_dir)),
            "compile the firmware to .mpy (scripts/build_firmware.py)",
        ),
        WriteJson(
            config_file,
            device_settings(request),
            f"write the device settings ({request.board} pins) for {BOARD_CONFIG_PATH}",
            mode=0o600,  # may hold the Wi-Fi and broker passwords
            from_context=("broker_user", "broker_password") if request.broker_config is not None else (),
        ),
        Mpremote(port, ("exec", PREPARE_SNIPPET), "remove the old app (/main.py) and packages; make /lib and /data"),
        Mpremote(
            port,
            ("fs", "cp", "-r", *(str(p) for p in packages), ":lib"),
            "copy the firmware packages to /lib",
            copies=packages,
        ),
        Mpremote(
            port,
            ("fs", "cp", str(config_file), ":" + BOARD_CONFIG_PATH),
            f"copy the settings to {BOARD_CONFIG_PATH}",
            copies=(config_file,),
        ),
        *ca_steps,
        ReadDevicePublicKey(port, KEYGEN_SNIPPET),
        RegisterDevice(request.cloud_url, request.site_id, request.device_id),
        WriteJson(
            out / f"device-{request.device_id}.json",
            {
                "device_id": request.device_id,
                "site_id": request.site_id,
                "board": request.board,
                "cloud_url": request.cloud_url,
            },
            "record what was provisioned (public key and registration, no secrets)",
            from_context=("public_key", "key_origin", "registration", "dry_run"),
        ),
        # Last: only a registered device boots into the app.
        *(
            Mpremote(port, ("fs", "cp", str(build_dir / name), ":" + name), f"copy /{name}",
                     copies=(build_dir / name,))
            for name in scripts
        ),
        Mpremote(port, ("reset",), "restart the board: it boots into the application"),
    ]


@dataclass(frozen=True)
class DeviceRotationRequest:
    port: str
    cloud_url: str
    device_id: str
    out_dir: Path


def device_rotation_plan(request: DeviceRotationRequest) -> list[Step]:
    """New key on the board (pending), rotate it in the cloud, promote it on the board, restart the board.

    Readings the board signs with the old key after the cloud step are refused (the old key is revoked), so
    the promote and the restart follow at once; gateways pick up the new key at their next registry sync."""
    port = request.port
    return [
        ReadDevicePublicKey(
            port,
            ROTATE_KEYGEN_SNIPPET,
            "generate the NEW device key on the board (hardware RNG; pending beside the current key until the "
            "cloud has it) and read back its public key only",
        ),
        RotateDeviceKey(request.cloud_url, request.device_id),
        PromoteDeviceKey(port),
        WriteJson(
            request.out_dir / f"device-{request.device_id}-key-rotation.json",
            {"device_id": request.device_id, "cloud_url": request.cloud_url},
            "record the rotation (new public key and the cloud's answer, no secrets)",
            from_context=("public_key", "key_origin", "rotation", "dry_run"),
        ),
        Mpremote(port, ("reset",), "restart the board: it signs with the new key from now on"),
    ]


@dataclass(frozen=True)
class GatewayRequest:
    cloud_url: str
    site_id: str
    gateway_id: str
    out_dir: Path
    config_dir: Path = Path("/etc/carbontrace")
    state_dir: Path = Path("/var/lib/carbontrace")
    unit_dir: Path = Path("/etc/systemd/system")
    service_user: str = "carbontrace"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    broker_config: Path | None = None  # the broker configuration directory: issue credentials, pin its CA
    unit_source: Path | None = GATEWAY_UNIT


def gateway_settings(request: GatewayRequest) -> dict[str, Any]:
    """gateway.toml's values (edge_gateway.config.GatewaySettings) as installed; api_key comes from the cloud."""
    return {
        "gateway_id": request.gateway_id,
        "site_id": request.site_id,
        "cloud_url": request.cloud_url,
        "key_file": str(request.config_dir / "gateway.key"),
        "spool_path": str(request.state_dir / "spool.sqlite"),
        "mqtt_host": request.mqtt_host,
        "mqtt_port": request.mqtt_port,
        **({"mqtt_ca_file": str(request.broker_config / "pki" / "ca.pem")} if request.broker_config else {}),
    }


def gateway_plan(request: GatewayRequest) -> list[Step]:
    """Key, registration, settings and unit staged under --out, then installed into the system."""
    out = request.out_dir
    user = request.service_user
    staged_key = out / "gateway.key"
    staged_config = out / "gateway.toml"
    broker_steps: list[Step] = []
    if request.broker_config is not None:
        broker_steps = [IssueBrokerCredentials(
            request.broker_config, request.site_id, request.gateway_id,
            f"issue the gateway's MQTT credentials in {request.broker_config} (reads its site's device topics; "
            "restart the broker to load them)", role="gateway")]
    steps: list[Step] = [
        CreateGatewayKey(staged_key),
        RegisterGateway(request.cloud_url, request.site_id, request.gateway_id),
        *broker_steps,
        WriteGatewayConfig(staged_config, gateway_settings(request)),
    ]
    unit_name = None
    if request.unit_source is not None and request.unit_source.is_file():
        unit_name = request.unit_source.name
        steps.append(CopyFile(request.unit_source, out / unit_name, "stage the systemd unit"))
    steps.append(
        WriteJson(
            out / f"gateway-{request.gateway_id}.json",
            {"gateway_id": request.gateway_id, "site_id": request.site_id, "cloud_url": request.cloud_url},
            "record what was provisioned (public key and registration, no secrets)",
            from_context=("public_key", "registration", "dry_run"),
        )
    )
    # useradd exits 9 when the user exists already: re-provisioning is fine.
    steps.append(
        SystemCommand(
            ("useradd", "--system", "--home", str(request.state_dir), "--shell", "/usr/sbin/nologin", user),
            f"create the service user {user}",
            ok_codes=(0, 9),
        )
    )
    steps += [
        SystemCommand(
            ("install", "-d", "-m", "0700", "-o", user, "-g", user, str(request.config_dir)),
            f"create {request.config_dir}",
        ),
        SystemCommand(
            ("install", "-m", "0600", "-o", user, "-g", user, str(staged_key), str(request.config_dir / "gateway.key")),
            "install the gateway key (readable by the service user only)",
        ),
        SystemCommand(
            ("install", "-m", "0600", "-o", user, "-g", user, str(staged_config),
             str(request.config_dir / "gateway.toml")),
            "install the settings (they hold the API key: the service user only)",
        ),
        SystemCommand(("rm", "-f", str(staged_key)), "remove the staged key copy: one copy of the key, in place"),
    ]
    if unit_name is not None:
        steps += [
            SystemCommand(
                ("install", "-m", "0644", str(out / unit_name), str(request.unit_dir / unit_name)),
                "install the systemd unit",
            ),
            SystemCommand(("systemctl", "daemon-reload"), "reload systemd units"),
            SystemCommand(("systemctl", "enable", "--now", unit_name), "start the gateway now and at boot"),
        ]
    return steps


@dataclass(frozen=True)
class GatewayRotationRequest:
    cloud_url: str
    gateway_id: str
    out_dir: Path
    config_dir: Path = Path("/etc/carbontrace")
    service_user: str = "carbontrace"
    unit_name: str = GATEWAY_UNIT.name


def gateway_rotation_plan(request: GatewayRotationRequest) -> list[Step]:
    """New key staged as gateway.next.key, service stopped, key rotated in the cloud, installed over the old
    key, service started. The API key and gateway.toml stay: the gateway id does not change.

    The service is stopped first so it does not upload under a key the cloud has just revoked (the cloud
    would refuse those batches and the gateway halt its uploads)."""
    out = request.out_dir
    user = request.service_user
    staged_key = out / "gateway.next.key"
    return [
        CreateGatewayKey(staged_key, "generate the gateway's NEW P-256 key (staged; reused if a rotation failed)"),
        SystemCommand(("systemctl", "stop", request.unit_name), "stop the gateway while its key changes"),
        RotateGatewayKey(request.cloud_url, request.gateway_id),
        WriteJson(
            out / f"gateway-{request.gateway_id}-key-rotation.json",
            {"gateway_id": request.gateway_id, "cloud_url": request.cloud_url},
            "record the rotation (new public key and the cloud's answer, no secrets)",
            from_context=("public_key", "rotation", "dry_run"),
        ),
        SystemCommand(
            ("install", "-m", "0600", "-o", user, "-g", user, str(staged_key), str(request.config_dir / "gateway.key")),
            "install the new gateway key over the old one (readable by the service user only)",
        ),
        SystemCommand(("rm", "-f", str(staged_key)), "remove the staged key copy: one copy of the key, in place"),
        SystemCommand(("systemctl", "start", request.unit_name), "start the gateway: it signs with the new key"),
    ]


def describe(step: Step) -> str:
    """One line for the operator."""
    return f"[{step.effect}] {step.purpose}"
