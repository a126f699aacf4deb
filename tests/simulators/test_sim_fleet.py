"""The fleet simulator against a real Mosquitto, a real subscriber and the gateway's real ingest path.

Each fault flag must show up at the gateway as its counted reason, for exactly the messages the fault
plan (a pure function of the seed) picked.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import start_http_server
from sim_fleet_rig import Gateway, Message, Recorder, fleet_credentials, recorder_access
from typer.testing import CliRunner

from carbontrace_protocol import cose
from carbontrace_protocol.errors import BadSignature, ProtocolError
from carbontrace_protocol.reading import Reading, decode_payload
from carbontrace_protocol.verify import verify_reading
from simulators.cli import sim_app
from simulators.fleet import Fleet, FleetConfig, FleetSnapshot
from simulators.fleet_faults import FaultPlan, TimedFault
from tests.conftest import MosquittoBroker, free_port

pytestmark = pytest.mark.timeout(60)

SITE = "site-sim"


class Rig:
    def __init__(self, broker: MosquittoBroker, tmp: Path) -> None:
        self.broker = broker
        self.tmp = tmp
        accesses = recorder_access(broker), broker.add_gateway(SITE, "gw-sim")  # issued before anyone connects
        self.recorder = Recorder(accesses[0])
        self.gateway = Gateway(tmp, accesses[1], SITE)

    def fleet(self, faults: FaultPlan | None = None, **overrides: object) -> Fleet:
        values: dict[str, object] = {
            "devices": 3, "rate_hz": 10.0, "site_id": SITE, "broker_port": self.broker.port, "count": 12,
            "workdir": self.tmp / "fleet", "faults": faults or FaultPlan(seed=1), "broker_ca": self.broker.ca_file,
        }
        values.update(overrides)
        cfg = FleetConfig(**values)  # type: ignore[arg-type]
        credentials = fleet_credentials(self.broker, cfg, self.tmp / "credentials.json")
        return Fleet(replace(cfg, credentials_file=credentials))

    def run(self, fleet: Fleet) -> FleetSnapshot:
        snapshot = fleet.run(rejections=self.gateway.rejections, register=self.gateway.register)
        assert snapshot.errors == {}
        assert snapshot.finished == len(fleet.all_devices)
        return snapshot

    def settle(self) -> dict[str, int]:
        """Gateway counts once it has handled every reading message the recorder saw for the site."""
        # After a broker restart (new credentials) the recorder's persistent session may deliver its queue a
        # little after the gateway's: both must agree before the counts are read.
        deadline = time.monotonic() + 30
        while True:
            total = sum(1 for m in self.recorder.snapshot() if m.topic.split("/")[2] == SITE)
            counts = self.gateway.wait_for(total)
            if sum(counts.values()) == total or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sum(counts.values()) == total
        return counts


@pytest.fixture
def rig(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(mosquitto, tmp_path)
    try:
        yield rig
    finally:
        rig.recorder.close()
        rig.gateway.close()


def parsed(message: Message) -> Reading:
    return decode_payload(bytes(cose.parse_sign1(message.payload).payload))


def verified(messages: list[Message], keys: dict[str, str]) -> list[Reading]:
    return [verify_reading(m.payload, bytes.fromhex(keys[m.device])) for m in messages]


def test_clean_fleet_delivers_every_reading_verified_and_in_order(rig: Rig) -> None:
    fleet = rig.fleet()
    keys = fleet.public_keys()
    snapshot = rig.run(fleet)

    assert (snapshot.made, snapshot.sent, snapshot.acked, snapshot.outbox, snapshot.dropped) == (36, 36, 36, 0, 0)
    by_device = rig.recorder.by_device()
    assert sorted(by_device) == sorted(keys) == ["sim-000", "sim-001", "sim-002"]
    for device, messages in by_device.items():
        readings = verified(messages, keys)
        assert [r.seq for r in readings] == list(range(12)), device
        assert all(r.device_id == device and r.flags == 0 for r in readings)
        # the real drivers read the emulated sensors: every field present and plausible
        assert all(400 <= r.co2_ppm <= 5000 and r.energy_wh is not None and r.power_deci_w > 0 for r in readings)
        assert [r.energy_wh for r in readings] == sorted(r.energy_wh for r in readings)
    # scenarios differ: the boiler room draws more power than the office
    office = verified(by_device["sim-000"], keys)[-1].power_deci_w
    boiler = verified(by_device["sim-002"], keys)[-1].power_deci_w
    assert boiler > office
    counts = rig.settle()
    assert counts == {"accepted": 36}
    assert rig.gateway.missing() == 0


def test_tamper_rate_flips_exactly_the_planned_readings(rig: Rig) -> None:
    plan = FaultPlan(seed=7, tamper_rate=0.3)
    fleet = rig.fleet(plan, count=15)
    keys = fleet.public_keys()
    snapshot = rig.run(fleet)
    counts = rig.settle()

    failed: collections.Counter[str] = collections.Counter()
    for message in rig.recorder.snapshot():
        try:
            verify_reading(message.payload, bytes.fromhex(keys[message.device]))
        except ProtocolError:
            failed[message.device] += 1
    planned = {d: {s for s in range(15) if plan.tamper_mode(d, s)} for d in keys}
    assert failed == collections.Counter({d: len(s) for d, s in planned.items() if s})
    modes = collections.Counter(plan.tamper_mode(d, s) for d in keys for s in planned[d])
    assert snapshot.tampered == sum(modes.values()) > 0
    assert counts.get("bad_signature", 0) == modes["signature"] + modes["payload"] == snapshot.expected["bad_signature"]
    malformed = sum(v for k, v in counts.items() if k.startswith("malformed"))
    assert malformed == modes["structure"] == snapshot.expected.get("malformed", 0)
    assert counts["accepted"] == 45 - snapshot.tampered
    assert snapshot.rejected == {k: v for k, v in counts.items() if k != "accepted"}
    # a tampered reading between two intact ones is a hole the gateway records; one at either end is not
    intact = {d: set(range(15)) - planned[d] for d in keys}
    holes = sum(1 for d in keys for s in planned[d] if min(intact[d]) < s < max(intact[d]))
    assert rig.gateway.missing() == snapshot.expected_gaps == holes


def test_tampered_seqs_are_the_planned_ones(rig: Rig) -> None:
    plan = FaultPlan(seed=3, tamper_rate=0.4)
    fleet = rig.fleet(plan, count=10, devices=2)
    keys = fleet.public_keys()
    rig.run(fleet)
    good: dict[str, set[int]] = collections.defaultdict(set)
    for message in rig.recorder.snapshot():
        try:
            good[message.device].add(verify_reading(message.payload, bytes.fromhex(keys[message.device])).seq)
        except ProtocolError:
            pass
    for device in keys:
        assert set(range(10)) - good[device] == {s for s in range(10) if plan.tamper_mode(device, s)}


def test_replays_count_as_duplicates_and_seq_conflicts(rig: Rig) -> None:
    plan = FaultPlan(seed=11, replay_rate=0.35)
    fleet = rig.fleet(plan, count=15)
    keys = fleet.public_keys()
    snapshot = rig.run(fleet)
    counts = rig.settle()

    same: collections.Counter[str] = collections.Counter()
    resigned: collections.Counter[str] = collections.Counter()
    for device, messages in rig.recorder.by_device().items():
        readings = verified(messages, keys)  # replays carry valid signatures, old and re-signed alike
        first: dict[int, bytes] = {}
        for message, reading in zip(messages, readings, strict=True):
            if reading.seq not in first:
                first[reading.seq] = message.payload
            elif first[reading.seq] == message.payload:
                same[device] += 1
            else:
                resigned[device] += 1
        assert sorted(first) == list(range(15))
    duplicates, conflicts = sum(same.values()), sum(resigned.values())
    assert duplicates > 0 and conflicts > 0
    assert snapshot.expected == {"duplicate": duplicates, "seq_conflict": conflicts}
    assert counts == {"accepted": 45, "duplicate": duplicates, "seq_conflict": conflicts}


def test_forged_devices_are_unknown_or_bad_signature(rig: Rig) -> None:
    fleet = rig.fleet(FaultPlan(seed=2, forged_devices=3), count=8)
    keys = fleet.public_keys()
    assert sorted(keys) == ["sim-000", "sim-001", "sim-002"]  # forged keys are never exported
    snapshot = rig.run(fleet)
    counts = rig.settle()

    by_device = rig.recorder.by_device()
    assert sorted(by_device) == ["sim-000", "sim-001", "sim-002", "sim-forged-00", "sim-forged-02"]
    impostor = 0
    for device in keys:
        for message in by_device[device]:
            try:
                verify_reading(message.payload, bytes.fromhex(keys[device]))
            except BadSignature:
                impostor += 1
    unknown = len(by_device["sim-forged-00"]) + len(by_device["sim-forged-02"])
    assert (unknown, impostor) == (16, 8)
    assert snapshot.forged_sent == 24
    assert snapshot.expected == {"unknown_device": 16, "bad_signature": 8}
    assert counts == {"accepted": 24, "unknown_device": 16, "bad_signature": 8}


def test_clock_jump_makes_one_device_clock_skewed(rig: Rig) -> None:
    plan = FaultPlan(seed=5, clock_jump=TimedFault(seconds=7200, at_s=0.5))
    fleet = rig.fleet(plan, count=15)
    keys = fleet.public_keys()
    jumped = fleet.clock_jump_device()
    assert jumped is not None
    snapshot = rig.run(fleet)
    counts = rig.settle()

    readings = verified(rig.recorder.by_device()[jumped], keys)
    late = [r for r in readings if r.timestamp - readings[0].timestamp > 3600]
    assert 0 < len(late) < 15 and readings[-1] in late  # the jump came mid-run and stayed
    assert snapshot.skewed == len(late) == snapshot.expected["clock_skew"]
    assert counts == {"accepted": 45 - len(late), "clock_skew": len(late)}


def test_reboots_keep_sequence_unique_and_resend_the_outbox(rig: Rig) -> None:
    fleet = rig.fleet(FaultPlan(seed=4, reboot_every=4), count=10)
    keys = fleet.public_keys()
    snapshot = rig.run(fleet)
    counts = rig.settle()

    assert snapshot.reboots == 6 and snapshot.made == 30 and snapshot.outbox == 0
    for device, messages in rig.recorder.by_device().items():
        readings = verified(messages, keys)
        bytes_of: dict[int, bytes] = {}
        for message, reading in zip(messages, readings, strict=True):
            assert bytes_of.setdefault(reading.seq, message.payload) == message.payload  # a seq never changes
        seqs = sorted(bytes_of)
        assert len(seqs) == 10, device
        boots = [seqs[0:4], seqs[4:8], seqs[8:10]]
        # within a boot consecutive numbers; a new boot starts past everything the old one reserved
        for boot in boots:
            assert boot == list(range(boot[0], boot[0] + len(boot)))
        assert boots[0][-1] < boots[1][0] - 1 and boots[1][-1] < boots[2][0] - 1
    resent = sum(d.stats.resent_after_reboot for d in fleet.devices)
    assert resent >= 1
    assert counts["accepted"] == 30 and counts.get("duplicate", 0) <= resent
    assert set(counts) <= {"accepted", "duplicate"}
    assert rig.gateway.missing() > 0  # the numbers a reboot skips are reported as missing


def test_link_outage_fills_the_outbox_then_delivers_everything(rig: Rig) -> None:
    plan = FaultPlan(seed=6, broker_outage=TimedFault(seconds=1.2, at_s=0.4))
    fleet = rig.fleet(plan, count=20)
    keys = fleet.public_keys()
    snapshot = rig.run(fleet)
    counts = rig.settle()

    assert snapshot.acked == snapshot.made == 60 and snapshot.outbox == 0
    assert all(d.stats.max_outbox >= 3 for d in fleet.devices), [d.stats for d in fleet.devices]  # ~12 made while cut off
    for messages in rig.recorder.by_device().values():
        assert sorted({r.seq for r in verified(messages, keys)}) == list(range(20))
        gaps = [b.received - a.received for a, b in itertools.pairwise(messages)]
        assert max(gaps) >= 0.8
    assert all(d.port.sockets_opened >= 2 for d in fleet.devices)
    assert counts["accepted"] == 60 and set(counts) <= {"accepted", "duplicate"}


def test_cli_exports_keys_and_reports_gateway_rejections(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    common = ["--devices", "2", "--site", SITE, "--workdir", str(tmp_path / "fleet"), "--seed", "9", "--prefix", "cli"]
    credentials = fleet_credentials(mosquitto, FleetConfig(devices=2, site_id=SITE, device_prefix="cli", count=1),
                                    tmp_path / "credentials.json")
    accesses = recorder_access(mosquitto), mosquitto.add_gateway(SITE, "gw-sim")  # issued before anyone connects
    recorder = Recorder(accesses[0])
    gateway = Gateway(tmp_path, accesses[1], SITE)
    server = None
    try:
        runner = CliRunner()
        keys_file = tmp_path / "keys.json"
        workdir = tmp_path / "fleet"
        common = ["--devices", "2", "--site", SITE, "--workdir", str(workdir), "--seed", "9", "--prefix", "cli"]
        result = runner.invoke(sim_app, ["fleet", *common, "--keys-only", "--keys-out", str(keys_file)])
        assert result.exit_code == 0, result.output
        keys = json.loads(keys_file.read_text())
        gateway.register(keys)
        metrics_port = free_port()
        server, _thread = start_http_server(metrics_port, "127.0.0.1", gateway.metrics.registry)
        report = tmp_path / "report.json"
        result = runner.invoke(sim_app, [
            "fleet", *common, "--rate", "10", "--count", "6", "--broker", f"127.0.0.1:{mosquitto.port}",
            "--broker-ca", str(mosquitto.ca_file), "--credentials", str(credentials),
            "--tamper-rate", "0.5", "--no-progress", "--interval", "0.2", "--report", str(report),
            "--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics",
        ])
        assert result.exit_code == 0, result.output
        final = json.loads(report.read_text())
        assert final["made"] == final["acked"] == 12 and final["tampered"] > 0
        good = 0
        for message in recorder.snapshot():
            try:
                verify_reading(message.payload, bytes.fromhex(keys[message.device]))
                good += 1
            except ProtocolError:
                pass
        assert good == 12 - final["tampered"]
        counts = gateway.wait_for(12)
        assert counts["accepted"] == good
        # the last summary line scraped the gateway's metrics endpoint; it may trail the gateway by a batch
        assert "gateway rejected" in result.output
        assert sum(final["rejected"].values()) <= final["tampered"]
    finally:
        recorder.close()
        gateway.close()
        if server is not None:
            server.shutdown()


def test_same_seed_same_keys_and_faults(tmp_path: Path) -> None:
    plan = FaultPlan(seed=21, tamper_rate=0.2, replay_rate=0.2, forged_devices=2)
    first = Fleet(FleetConfig(devices=2, count=1, workdir=tmp_path / "a", faults=plan))
    second = Fleet(FleetConfig(devices=2, count=1, workdir=tmp_path / "b", faults=plan))
    other = Fleet(FleetConfig(devices=2, count=1, workdir=tmp_path / "c", faults=FaultPlan(seed=22)))
    assert first.public_keys() == second.public_keys() != other.public_keys()
    assert [d.spec for d in first.forged] == [d.spec for d in second.forged]
    for fleet in (first, second, other):
        fleet.close()
