"""The provisioning plans themselves (pure): order, pins, and that the device key never leaves the device."""

from __future__ import annotations

import contextlib
import io
import sys
import types
from pathlib import Path

import pytest
from carbontrace_device import config as device_config
from carbontrace_device.keystore import KEY_FILE, DeviceKey

from carbontrace.provision_plan import (
    BOARD_PINS,
    KEYGEN_SNIPPET,
    PREPARE_SNIPPET,
    CreateGatewayKey,
    DeviceRequest,
    GatewayRequest,
    LocalCommand,
    Mpremote,
    ReadDevicePublicKey,
    RegisterDevice,
    RegisterGateway,
    SystemCommand,
    WriteGatewayConfig,
    WriteJson,
    device_plan,
    device_settings,
    gateway_plan,
    parse_broker,
)
from carbontrace.provision_runner import ProvisionError, parse_public_key
from simulators.host_port import HostPort


def _request(tmp_path: Path, **changes: object) -> DeviceRequest:
    values: dict[str, object] = {
        "port": "/dev/ttyUSB0",
        "cloud_url": "https://cloud.example.org",
        "site_id": "plant-7",
        "device_id": "dev-017",
        "out_dir": tmp_path,
    }
    values.update(changes)
    return DeviceRequest(**values)  # type: ignore[arg-type]


def _board_commands(plan: list[object]) -> list[tuple[str, ...]]:
    commands = []
    for step in plan:
        if isinstance(step, ReadDevicePublicKey):
            step = step.mpremote()
        if isinstance(step, Mpremote):
            commands.append(step.args)
    return commands


@pytest.mark.parametrize("board", ["esp32", "picow"])
def test_device_plan_order_and_effects(tmp_path: Path, board: str) -> None:
    plan = device_plan(_request(tmp_path, board=board))
    kinds = [type(step).__name__ for step in plan]
    assert kinds == [
        "LocalCommand", "WriteJson", "Mpremote", "Mpremote", "Mpremote",
        "ReadDevicePublicKey", "RegisterDevice", "WriteJson", "Mpremote", "Mpremote",
    ]
    assert isinstance(plan[0], LocalCommand) and plan[0].argv[1].endswith("scripts/build_firmware.py")
    # Copy before keygen (the snippet imports the firmware), register before the board restarts into the app.
    assert kinds.index("ReadDevicePublicKey") < kinds.index("RegisterDevice")
    commands = _board_commands(plan)
    assert commands[-1] == ("reset",)
    # The app's entry point goes on only after registration, so the board never runs unregistered.
    assert commands[-2] == ("fs", "cp", str(tmp_path / "firmware" / "main.py"), ":main.py")
    assert "'/main.py'" in commands[0][1]
    for step in plan:
        if isinstance(step, Mpremote | ReadDevicePublicKey):
            assert step.port == "/dev/ttyUSB0" and step.effect == "board"
    assert {step.effect for step in plan if isinstance(step, RegisterDevice)} == {"cloud"}


def test_real_device_plan_never_reads_the_device_key(tmp_path: Path) -> None:
    plan = device_plan(_request(tmp_path, wifi_ssid="iot", wifi_password="secret"))
    commands = _board_commands(plan)
    assert commands, "the plan talks to the board"
    snippets = []
    for args in commands:
        verb = args[0] if args[0] != "fs" else args[1]
        # Only these verbs: nothing that prints, edits, mounts or copies files off the board.
        assert verb in ("exec", "cp", "reset"), args
        if verb == "cp":
            sources = [a for a in args[2:-1] if a != "-r"]
            assert all(not s.startswith(":") for s in sources), f"copies from the board: {args}"
            assert args[-1].startswith(":"), "copies go to the board"
        if verb == "exec":
            snippets.append(args[1])
        assert not any(KEY_FILE in a for a in args)
    assert snippets == [PREPARE_SNIPPET, KEYGEN_SNIPPET]
    for snippet in snippets:
        assert KEY_FILE not in snippet and "_d" not in snippet.replace("_device", "")
        assert "open(" not in snippet and ".read(" not in snippet
    # The prepare snippet deletes only main.py and the firmware packages, never anything under /data.
    assert "/data/" not in PREPARE_SNIPPET


def test_keygen_snippet_prints_only_the_public_key(tmp_path: Path) -> None:
    """Run the snippet that runs on the board against the host port (the firmware's CPython twin)."""
    flash = tmp_path / "flash"
    board_module = types.ModuleType("carbontrace_device.ports.board")
    board_module.BoardPort = lambda: HostPort(str(flash))  # type: ignore[attr-defined]
    saved = sys.modules.get("carbontrace_device.ports.board")
    sys.modules["carbontrace_device.ports.board"] = board_module
    try:
        outputs = []
        for _ in range(2):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(KEYGEN_SNIPPET, {})
            outputs.append(buffer.getvalue())
    finally:
        if saved is None:
            del sys.modules["carbontrace_device.ports.board"]
        else:
            sys.modules["carbontrace_device.ports.board"] = saved
    key = DeviceKey(HostPort(str(flash)))
    assert parse_public_key(outputs[0]) == bytes(key.public_key)
    assert outputs[0].split()[-1] == "new" and outputs[1].split()[-1] == "existing"
    assert parse_public_key(outputs[1]) == bytes(key.public_key)  # a second run keeps the identity
    seed = (flash / KEY_FILE).read_bytes()[4:44]
    for output in outputs:
        assert seed.hex() not in output and f"{key._d:064x}" not in output
        assert len(output.strip().splitlines()) == 1


def test_parse_public_key_rejects_junk() -> None:
    with pytest.raises(ProvisionError, match="no CT-PUBKEY"):
        parse_public_key("Traceback (most recent call last):\nOSError: 19\n")
    with pytest.raises(ProvisionError, match="not a P-256 point"):
        parse_public_key("CT-PUBKEY 04" + "11" * 64 + " new\n")


@pytest.mark.parametrize("board", ["esp32", "picow"])
def test_device_settings_pass_the_firmware_validator(tmp_path: Path, board: str) -> None:
    request = _request(tmp_path, board=board, wifi_ssid="iot", wifi_password="pw", broker="192.168.10.2:1884",
                       meter="s0")
    settings = device_config.load(None, overrides=device_settings(request))
    assert settings["broker_host"] == "192.168.10.2" and settings["broker_port"] == 1884
    assert settings["site_id"] == "plant-7" and settings["device_id"] == "dev-017"
    pins = BOARD_PINS[board]
    assert {k: settings[k] for k in pins} == pins
    # The S0 input must not sit on an I2C or UART pin of the same board.
    assert len({pins["s0_pin"], pins["i2c_scl"], pins["i2c_sda"], pins["uart_tx"], pins["uart_rx"]}) == 5


def test_esp32_pins_are_the_firmware_defaults() -> None:
    from carbontrace_device.config_defaults import DEFAULTS

    assert {k: DEFAULTS[k] for k in BOARD_PINS["esp32"]} == BOARD_PINS["esp32"]


def test_bad_device_id_fails_the_firmware_validator(tmp_path: Path) -> None:
    with pytest.raises(device_config.ConfigError, match="device_id"):
        device_config.load(None, overrides=device_settings(_request(tmp_path, device_id="dev/017")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("gw.local:1883", ("gw.local", 1883)), ("10.0.0.2", ("10.0.0.2", 1883)), ("[fd00::2]:8883", ("fd00::2", 8883))],
)
def test_parse_broker(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["host:0", "host:99999", ":1883", "host:port"])
def test_parse_broker_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_broker(text)


def test_gateway_plan_installs_the_key_once(tmp_path: Path) -> None:
    plan = gateway_plan(GatewayRequest("https://c", "plant-7", "gw-1", tmp_path))
    assert isinstance(plan[0], CreateGatewayKey) and plan[0].path == tmp_path / "gateway.key"
    assert isinstance(plan[1], RegisterGateway)
    config_step = plan[2]
    assert isinstance(config_step, WriteGatewayConfig)
    installed_key = config_step.settings["key_file"]
    commands = [step.argv for step in plan if isinstance(step, SystemCommand)]
    key_install = next(i for i, argv in enumerate(commands) if argv[-1] == installed_key)
    assert commands[key_install][commands[key_install].index("-m") + 1] == "0600"
    removal = commands.index(("rm", "-f", str(tmp_path / "gateway.key")))
    assert removal > key_install, "the staged copy goes only after the installed one exists"
    assert commands[-1] == ("systemctl", "enable", "--now", "carbontrace-gateway.service")
    # Everything before the system steps stays under --out.
    for step in plan:
        if isinstance(step, WriteJson | WriteGatewayConfig):
            assert step.path.parent == tmp_path


def test_gateway_plan_without_a_unit_file(tmp_path: Path) -> None:
    plan = gateway_plan(GatewayRequest("https://c", "plant-7", "gw-1", tmp_path, unit_source=tmp_path / "missing"))
    assert not any(isinstance(s, SystemCommand) and s.argv[0] == "systemctl" for s in plan)
