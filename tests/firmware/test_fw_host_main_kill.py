"""kill -9 of the real device process (simulators.device_host) mid-publish and during a broker outage: after a restart the
outbox resends every stored reading and no sequence number is ever reused for different content."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from carbontrace.servers import wait_until
from carbontrace_protocol.verify import verify_reading
from tests.conftest import REPO_ROOT, MosquittoBroker
from tests.firmware.fw_mqtt_helpers import Subscriber, device_settings

SITE = "site-k"
DEVICE = "dev-kill"


def device_cmd(flash: Path, broker: MosquittoBroker, events: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "simulators.device_host",
        "--flash",
        str(flash),
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--site",
        SITE,
        "--device",
        DEVICE,
        "--interval-ms",
        "40",
        "--sensors",
        "emulated",
        "--sensor-time-scale",
        "100",
        "--reconnect-max-ms",
        "300",
        "--events",
        str(events),
        *extra,
    ]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH="{}:{}".format(REPO_ROOT, REPO_ROOT / "firmware"))


def stored_seqs(events: Path) -> list[int]:
    if not events.exists():
        return []
    return [int(line.split()[1]) for line in events.read_text().splitlines() if line.startswith("stored ")]


def test_kill_minus_9_resends_outbox_and_never_reuses_seq(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    os.chmod(mosquitto.workdir, 0o777)  # let Mosquitto (dropped to user "mosquitto") save its database
    flash, events = tmp_path / "flash", tmp_path / "events.log"
    pubkey_hex = subprocess.run(
        [sys.executable, "-m", "simulators.device_host", "--flash", str(flash), "--print-pubkey"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    public_key = bytes.fromhex(pubkey_hex)
    assert len(public_key) == 65
    # Provisioned as `carbontrace provision` does: credentials and the broker's CA in config.json on flash.
    (flash / "config.json").write_text(json.dumps(device_settings(mosquitto, flash, SITE, DEVICE)))
    sub = Subscriber(mosquitto.add_gateway(SITE, "paho-kill"), f"carbontrace/v1/{SITE}/{DEVICE}/reading")

    def received_seqs() -> set[int]:
        return {verify_reading(p, public_key).seq for p in sub.payloads("/reading")}

    # 1. kill -9 while readings flow
    proc = subprocess.Popen(device_cmd(flash, mosquitto, events), env=env())
    try:
        wait_until(lambda: len(received_seqs()) >= 15, 20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    first_run = stored_seqs(events)

    # 2. broker down: readings pile up in the outbox; kill -9 with them pending
    subscribed = sub.subscribed
    mosquitto.stop()
    before = len(first_run)
    proc = subprocess.Popen(device_cmd(flash, mosquitto, events), env=env())
    try:
        wait_until(lambda: len(stored_seqs(events)) >= before + 10, 20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    second_run = stored_seqs(events)[before:]
    assert min(second_run) > max(first_run)  # a restart never reuses a number
    mosquitto.start()
    sub.wait_subscribed(subscribed + 1)

    # 3. restart: the outbox delivers everything stored before; the run ends once it is empty
    done = subprocess.run(device_cmd(flash, mosquitto, events, "--count", "3"), env=env(), timeout=60)
    assert done.returncode == 0
    all_stored = stored_seqs(events)
    assert all_stored == sorted(set(all_stored))  # strictly increasing across all three runs
    wait_until(lambda: received_seqs() >= set(all_stored), 15)
    contents: dict[int, set[bytes]] = {}
    for payload in sub.payloads("/reading"):
        contents.setdefault(verify_reading(payload, public_key).seq, set()).add(payload)
    assert set(contents) >= set(all_stored)  # nothing lost
    # a kill between the outbox append and the events line leaves a delivered reading the log never saw
    assert len(set(contents) - set(all_stored)) <= 2
    assert all(len(v) == 1 for v in contents.values())  # a seq never carries two different readings
    sub.close()
