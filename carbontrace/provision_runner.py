"""Executes a provisioning plan (carbontrace.provision_plan), for real or as a dry run.

The dry run performs the ``local`` steps (firmware build, files under --out, the gateway key) and records
every ``board``, ``cloud`` and ``system`` step instead of performing it; ``dry-run-actions.txt`` in --out
lists them. Where a later step needs a value only the board or the cloud can give, the dry run puts in a
clearly labelled stand-in: a device key pair made on this computer only to show the flow (its private
half is discarded at once and written nowhere), and a placeholder instead of the gateway's API key.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from carbontrace.cloud_registration import RegistrationClient
from carbontrace.provision_plan import (
    PUBKEY_MARKER,
    CopyFile,
    CreateGatewayKey,
    IssueBrokerCredentials,
    LocalCommand,
    Mpremote,
    PromoteDeviceKey,
    ReadDevicePublicKey,
    RegisterDevice,
    RegisterGateway,
    RotateDeviceKey,
    RotateGatewayKey,
    Step,
    SystemCommand,
    WriteGatewayConfig,
    WriteJson,
    describe,
)
from carbontrace_host.secret_files import FILE_MODE, private_dir, write_secret
from carbontrace_protocol import p256
from edge_gateway.keys import create_key_file, load_private_key, public_key_of

DRY_RUN_KEY_ORIGIN = "DRY-RUN stand-in: generated on this computer only to show the flow; not on any device"
DEVICE_KEY_ORIGIN = "generated on the device by its hardware RNG (keystore.DeviceKey); only the public key was read"
DRY_RUN_API_KEY = "DRY-RUN-no-key-the-cloud-was-not-called"
ACTIONS_FILE = "dry-run-actions.txt"
MANUAL_FILE = "manual-actions.txt"
MPREMOTE = (sys.executable, "-m", "mpremote")
_PUBKEY_LINE = re.compile(rf"^{PUBKEY_MARKER} ([0-9a-fA-F]{{130}})\b", re.MULTILINE)


class ProvisionError(Exception):
    pass


def parse_public_key(output: str) -> bytes:
    """The SEC1 public key from the keygen snippet's output; checked to be a point on P-256."""
    match = _PUBKEY_LINE.search(output)
    if match is None:
        raise ProvisionError(f"the board printed no {PUBKEY_MARKER} line; output was:\n{output[-2000:]}")
    key = bytes.fromhex(match.group(1))
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    except ValueError as err:
        raise ProvisionError("the board's public key is not a P-256 point") from err
    return key


def toml_document(table: str, values: dict[str, Any]) -> str:
    """A flat TOML table. JSON string escapes (ASCII-only output) are valid TOML basic strings."""
    lines = [f"[{table}]"]
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, str):
            text = json.dumps(value)
        else:
            raise TypeError(f"{key}: unsupported TOML value {value!r}")
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str, mode: int) -> None:
    """Through the one secret-file writer (0600 in a 0700 directory); ``mode`` may only narrow it."""
    write_secret(path, text)
    os.chmod(path, mode & FILE_MODE)


def _files_under(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        else:
            files.append(path)
    return files


class PlanRunner:
    def __init__(
        self,
        *,
        dry_run: bool,
        api_key: str,
        echo: Callable[[str], None],
        mpremote: tuple[str, ...] = MPREMOTE,
        command_timeout_s: float = 300.0,
        client_factory: Callable[[str, str], RegistrationClient] = RegistrationClient,
        perform_system: bool = True,
    ) -> None:
        self.dry_run = dry_run
        self.perform_system = perform_system and not dry_run
        self.api_key = api_key
        self.echo = echo
        self.mpremote = mpremote
        self.command_timeout_s = command_timeout_s
        self.client_factory = client_factory
        self.context: dict[str, Any] = {"dry_run": dry_run}
        self.actions: list[str] = []  # what the dry run did not do, one line each

    def run(self, steps: list[Step], out_dir: Path) -> dict[str, Any]:
        private_dir(out_dir)
        label = "DRY RUN: " if self.dry_run else ""
        for number, step in enumerate(steps, 1):
            self.echo(f"{label}{number}/{len(steps)} {describe(step)}")
            self._execute(step)
        if self.actions:
            name = ACTIONS_FILE if self.dry_run else MANUAL_FILE
            write_secret(out_dir / name, "\n".join(self.actions) + "\n")
            self.echo(f"{label}{len(self.actions)} actions not performed; listed in {out_dir / name}")
        return self.context

    # --- steps ----------------------------------------------------------------------------------
    def _execute(self, step: Step) -> None:
        if isinstance(step, LocalCommand):
            self._run(list(step.argv), step.purpose)
        elif isinstance(step, WriteJson):
            content = dict(step.content)
            content.update({k: self.context[k] for k in step.from_context if k in self.context})
            _write_private(step.path, json.dumps(content, indent=2, sort_keys=True) + "\n", step.mode)
            self.echo(f"  wrote {step.path}")
        elif isinstance(step, Mpremote):
            self._mpremote(step)
        elif isinstance(step, ReadDevicePublicKey):
            self._read_device_key(step)
        elif isinstance(step, RegisterDevice):
            self._register_device(step)
        elif isinstance(step, CreateGatewayKey):
            self._gateway_key(step)
        elif isinstance(step, RegisterGateway):
            self._register_gateway(step)
        elif isinstance(step, RotateDeviceKey):
            self._rotate(step, f"devices/{step.device_id}/keys")
        elif isinstance(step, RotateGatewayKey):
            self._rotate(step, f"gateways/{step.gateway_id}/keys")
        elif isinstance(step, PromoteDeviceKey):
            self._promote_device_key(step)
        elif isinstance(step, WriteGatewayConfig):
            values = dict(step.settings)
            values["api_key"] = self.context["api_key"]
            values.update({k: self.context[k] for k in ("mqtt_username", "mqtt_password") if k in self.context})
            _write_private(step.path, toml_document("gateway", values), step.mode)
            self.echo(f"  wrote {step.path}")
        elif isinstance(step, CopyFile):
            private_dir(step.dest.parent)
            shutil.copyfile(step.source, step.dest)
            os.chmod(step.dest, FILE_MODE)  # everything under --out is the operator's; `install -m` sets the final mode
            self.echo(f"  wrote {step.dest}")
        elif isinstance(step, IssueBrokerCredentials):
            self._issue_broker_credentials(step)
        elif isinstance(step, SystemCommand):
            if not self.perform_system:
                self._record(f"{'would run' if self.dry_run else 'run by hand'}: {shlex.join(step.argv)}")
            else:
                self._run(list(step.argv), step.purpose, step.ok_codes)
        else:  # pragma: no cover - the Step union is closed
            raise TypeError(f"unknown step {step!r}")

    def _issue_broker_credentials(self, step: IssueBrokerCredentials) -> None:
        if self.dry_run:
            self._record(f"would issue MQTT credentials for {step.device_id} in {step.broker_dir}")
            return
        from carbontrace.broker_config import BrokerConfig

        config = BrokerConfig.open(step.broker_dir)
        if step.role == "gateway":
            credentials = config.add_gateway(step.site_id, step.device_id)
            self.context["mqtt_username"] = credentials.username
            self.context["mqtt_password"] = credentials.password
        else:
            credentials = config.add_device(step.site_id, step.device_id)
            self.context["broker_user"] = credentials.username
            self.context["broker_password"] = credentials.password
        self._record(f"restart the broker ({step.broker_dir / 'mosquitto.conf'}) so it loads {step.device_id}")

    def _record(self, line: str) -> None:
        self.actions.append(line)
        self.echo(f"  {line}")

    def _run(self, argv: list[str], purpose: str, ok_codes: tuple[int, ...] = (0,)) -> str:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=self.command_timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ProvisionError(f"{purpose}: {shlex.join(argv)}: {err}") from err
        if result.returncode not in ok_codes:
            raise ProvisionError(
                f"{purpose}: {shlex.join(argv)} exited {result.returncode}\n{(result.stderr or result.stdout)[-2000:]}"
            )
        return result.stdout

    def _mpremote(self, step: Mpremote) -> None:
        argv = step.argv(self.mpremote)
        if not self.dry_run:
            self._run(argv, step.purpose)
            return
        self._record(f"would run: {shlex.join(['mpremote', *argv[len(self.mpremote):]])}")
        for path in _files_under(step.copies):
            self._record(f"would copy: {path} ({path.stat().st_size} bytes)")

    def _read_device_key(self, step: ReadDevicePublicKey) -> None:
        command = step.mpremote()
        if self.dry_run:
            self._mpremote(command)
            # A stand-in so the later steps have a key to show; its private half is dropped right here.
            public = bytes(p256.public_key(p256.private_key_from_bytes(os.urandom(40))))
            self.context["key_origin"] = DRY_RUN_KEY_ORIGIN
        else:
            public = parse_public_key(self._run(command.argv(self.mpremote), step.purpose))
            self.context["key_origin"] = DEVICE_KEY_ORIGIN
        self.context["public_key"] = public.hex()
        self.echo(f"  public key ({self.context['key_origin']}): {public.hex()}")

    def _register_device(self, step: RegisterDevice) -> None:
        body = {"device_id": step.device_id, "public_key": self.context["public_key"]}
        url = f"{step.cloud_url.rstrip('/')}/api/v1/sites/{step.site_id}/devices"
        if self.dry_run:
            self._record(f"would POST {url} (Authorization: Bearer ***) {json.dumps(body)}")
            self.context["registration"] = {"sent": False, "url": url, "body": body}
            return
        with self.client_factory(step.cloud_url, self.api_key) as client:
            record = client.register_device(step.site_id, step.device_id, bytes.fromhex(self.context["public_key"]))
        self.context["registration"] = record
        self.echo(f"  registered {step.device_id} under {step.site_id}: {record.get('registered_tx')}")

    def _gateway_key(self, step: CreateGatewayKey) -> None:
        # A key staged by an earlier attempt that failed later (e.g. at registration) is reused, never replaced:
        # if that attempt did register it, replacing it would leave the cloud with a key nobody holds.
        if step.path.exists():
            public = public_key_of(load_private_key(step.path))
            self.echo(f"  reusing the staged key {step.path}; public key {public.hex()}")
        else:
            public = create_key_file(step.path)
            self.echo(f"  wrote {step.path} (mode 0600); public key {public.hex()}")
        self.context["public_key"] = public.hex()

    def _register_gateway(self, step: RegisterGateway) -> None:
        body = {"gateway_id": step.gateway_id, "public_key": self.context["public_key"]}
        url = f"{step.cloud_url.rstrip('/')}/api/v1/sites/{step.site_id}/gateways"
        if self.dry_run:
            self._record(f"would POST {url} (Authorization: Bearer ***) {json.dumps(body)}")
            self.context["api_key"] = DRY_RUN_API_KEY
            self.context["registration"] = {"sent": False, "url": url, "body": body}
            return
        with self.client_factory(step.cloud_url, self.api_key) as client:
            created = client.register_gateway(step.site_id, step.gateway_id, bytes.fromhex(self.context["public_key"]))
        self.context["api_key"] = created["api_key"]
        self.context["registration"] = {k: v for k, v in created.items() if k != "api_key"}
        self.echo(f"  registered gateway {step.gateway_id} under {step.site_id}; API key received")

    def _rotate(self, step: RotateDeviceKey | RotateGatewayKey, path: str) -> None:
        body = {"public_key": self.context["public_key"]}
        url = f"{step.cloud_url.rstrip('/')}/api/v1/{path}"
        if self.dry_run:
            self._record(f"would POST {url} (Authorization: Bearer ***) {json.dumps(body)}")
            self.context["rotation"] = {"sent": False, "url": url, "body": body}
            return
        public_key = bytes.fromhex(self.context["public_key"])
        with self.client_factory(step.cloud_url, self.api_key) as client:
            if isinstance(step, RotateDeviceKey):
                record = client.rotate_device_key(step.device_id, public_key)
                name = f"device {step.device_id}"
            else:
                record = client.rotate_gateway_key(step.gateway_id, public_key)
                name = f"gateway {step.gateway_id}"
        self.context["rotation"] = record
        done = "already had this key" if record.get("already_current") else f"rotated: {record.get('registered_tx')}"
        self.echo(f"  {name} {done}")

    def _promote_device_key(self, step: PromoteDeviceKey) -> None:
        command = step.mpremote()
        if self.dry_run:
            self._mpremote(command)
            return
        public = parse_public_key(self._run(command.argv(self.mpremote), step.purpose))
        if public.hex() != self.context["public_key"]:
            raise ProvisionError(
                f"after the promote the board holds key {public.hex()}, not the registered {self.context['public_key']}"
            )
        self.echo(f"  the board's key is now {public.hex()}")
