"""The device fleet simulator: N virtual devices running the firmware's ``DeviceApp`` over real MQTT.

Each device is the firmware as it runs on a board, only with the host port: its own flash directory
(key, sequence store, outbox, all rebuilt from flash on a reboot), the real SCD4x driver over the
bus-level SCD4x emulator (a scenario per device: office, greenhouse, boiler_room) and the real PZEM-004T
driver over the Modbus emulator. One thread per device runs ``run_once()`` in a loop, like ``run_forever``.

Faults (``fleet_faults.FaultPlan``) are injected around the firmware, never inside it: the link is cut
through the port (Wi-Fi down), the wall clock jumps through the port's clock offset, reboots throw the
app away and build a new one from the same flash, tampering happens between the outbox and the socket,
replays and forged devices publish extra messages. ``DeviceStats.expected`` counts, per gateway reason,
the rejections the gateway should report for what this device sent (see ``fleet_faults``).

``Fleet.public_keys()`` maps device id -> SEC1 public key (hex) of the genuine devices (registration);
forged devices' keys are never exported.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbontrace_host.secret_files import private_dir
from simulators import firmware_path

firmware_path.ensure()

from carbontrace_device import config as device_config  # noqa: E402
from carbontrace_device.app import DeviceApp, status_topic  # noqa: E402
from carbontrace_device.mqtt_client import MQTTClient  # noqa: E402
from carbontrace_device.pzem004t import PZEM004T  # noqa: E402
from carbontrace_device.resilient_mqtt import ResilientMQTT  # noqa: E402
from carbontrace_device.scd4x import SCD4X  # noqa: E402

from carbontrace_protocol import cose  # noqa: E402
from carbontrace_protocol.reading import FLAG_TIME_NOT_SYNCED, Reading, decode_payload  # noqa: E402
from simulators.fleet_faults import FaultPlan, expected_tamper_reason, flip_byte  # noqa: E402
from simulators.fleet_link import SimPort, TamperingLink, reading_seq  # noqa: E402
from simulators.pzem_emulator import DailyLoad, PZEMEmulator, UARTAdapter  # noqa: E402
from simulators.scd4x_emulator import SCENARIOS, SCD4xEmulator, Scenario  # noqa: E402

SCD4X_PERIOD_S = 5.0
BROKER_CA_FILE = "broker-ca.pem"  # the name on each device's flash
# Each scenario's electrical load (base, peak watts) for the PZEM emulator.
LOADS = {"office": (300.0, 2500.0), "greenhouse": (800.0, 4000.0), "boiler_room": (2000.0, 9000.0)}
EMULATOR_LOG_KEEP = 64  # the emulators log every transfer; a long run keeps only the newest


@dataclass(frozen=True)
class FleetConfig:
    devices: int = 3
    rate_hz: float = 1.0  # readings per second per device
    site_id: str = "site-1"
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    # The broker's CA (PEM) and a JSON file {device name: {"username", "password"}} as issued by the broker
    # configuration (carbontrace/broker_config.py): each device then speaks TLS with its own credentials, as a
    # provisioned board does. A device without an entry connects without credentials (and is refused).
    broker_ca: Path | None = None
    credentials_file: Path | None = None
    duration_s: float | None = None  # measuring time; with count too, a cap
    count: int | None = None  # readings per device
    workdir: Path | None = None  # device flash directories; None: a temporary directory
    device_prefix: str = "sim"
    sensor_time_scale: float | None = None  # None: fast enough for the SCD4x to have a sample each cycle
    faults: FaultPlan = field(default_factory=FaultPlan)
    drain_timeout_s: float = 15.0  # after measuring stops, how long to wait for the outboxes to empty
    reconnect_max_ms: int = 1000
    keepalive_s: int = 30
    skew_limit_s: int = 300  # the gateway's max_clock_skew_s, to predict clock_skew rejections
    poll_ms: int = 10  # the app's pause between steps, as run_forever's poll_interval_ms

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("a fleet needs at least one device")
        if self.rate_hz <= 0:
            raise ValueError("the rate must be > 0 readings/s")
        if self.duration_s is None and self.count is None:
            raise ValueError("give a duration or a reading count")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")

    @property
    def interval_ms(self) -> int:
        return max(1, round(1000 / self.rate_hz))

    @property
    def time_scale(self) -> float:
        if self.sensor_time_scale is not None:
            return self.sensor_time_scale
        # the SCD4x's 5 s period must fit twice into one measuring interval
        return max(1.0, 2 * SCD4X_PERIOD_S * 1000 / self.interval_ms)


@dataclass(frozen=True)
class DeviceSpec:
    device_id: str  # the id in its readings and topic
    index: int
    scenario: Scenario
    kind: str = "genuine"  # "genuine" | "unknown" (unregistered id) | "impersonate" (registered id, other key)
    client_id: str | None = None  # MQTT client id; None: the device id (the firmware's choice)

    @property
    def name(self) -> str:
        """Unique within the fleet: names the flash directory and seeds the key."""
        return self.client_id or self.device_id


@dataclass(frozen=True)
class Stored:
    seq: int
    record_id: int
    payload: bytes


@dataclass
class DeviceStats:
    made: int = 0  # readings signed and stored in the outbox
    sent: int = 0  # reading publishes (a re-send after a reboot counts again)
    acked_before: int = 0  # PUBACKed readings of earlier boots
    acked_now: int = 0
    outbox: int = 0
    max_outbox: int = 0
    dropped: int = 0
    reboots: int = 0
    resent_after_reboot: int = 0  # readings still pending in the outbox at a reboot
    tampered: collections.Counter[str] = field(default_factory=collections.Counter)  # by mode
    replayed_duplicate: int = 0
    replayed_conflict: int = 0
    skewed: int = 0  # readings sent with a timestamp beyond skew_limit_s
    expected: collections.Counter[str] = field(default_factory=collections.Counter)  # gateway reasons
    # Sequence numbers whose every copy the gateway must reject (tampered, clock-skewed) and those sent intact:
    # a withheld number between two delivered ones is a gap the gateway must record (see expected_gaps).
    withheld: set[int] = field(default_factory=set)
    delivered: set[int] = field(default_factory=set)
    finished: bool = False
    error: str | None = None

    @property
    def acked(self) -> int:
        return self.acked_before + self.acked_now

    def expected_gaps(self) -> int:
        """Readings the gateway must report missing: withheld ones inside the delivered range (a withheld reading
        before the first or after the last delivered one leaves no hole the gateway can see)."""
        delivered = set(self.delivered)  # copies: the device thread adds to them
        if not delivered:
            return 0
        low, high = min(delivered), max(delivered)
        return sum(1 for seq in set(self.withheld) - delivered if low < seq < high)


@dataclass(frozen=True)
class PendingReplay:
    target: Stored
    conflict: bool


class SimDevice:
    """One virtual device: hardware (port, emulators) that outlives reboots, and the app that does not."""

    def __init__(self, spec: DeviceSpec, cfg: FleetConfig, flash_dir: Path) -> None:
        self.spec = spec
        self.cfg = cfg
        self.plan = cfg.faults
        private_dir(flash_dir)  # a virtual device's flash holds its private key: 0700 (no modes on real flash)
        seed = self.plan.seed
        self.port = SimPort(str(flash_dir), rng_seed=f"{seed}|{spec.name}")
        scale = cfg.time_scale
        self.time_scale = scale
        self.scd = SCD4xEmulator(scenario=spec.scenario, seed=seed * 10007 + spec.index, time_scale=scale)
        base_w, peak_w = LOADS[spec.scenario]
        self.pzem = PZEMEmulator(load=DailyLoad(base_w, peak_w, seed=seed * 10007 + spec.index), time_scale=scale)
        self.stats = DeviceStats()
        self.history: collections.deque[Stored] = collections.deque(maxlen=8)
        self.replays: list[PendingReplay] = []
        self.clock_jumps = False  # set by the fleet for the one device whose clock jumps
        self._jumped = False
        self._link_cut = False
        self._boot_made = 0
        self.measuring = True
        self.app: Any = None
        self.link: TamperingLink | None = None
        self.boot()

    # --- life cycle ---------------------------------------------------------------------------------
    def _sensor_sleep_ms(self, ms: int) -> None:
        # The driver's waits are in sensor time; the emulated sensor runs time_scale times faster.
        time.sleep(ms / 1000 / self.time_scale)

    def _broker_auth(self) -> dict[str, Any]:
        """broker_user/password/ca for this device: its credentials (by its name) and the broker's CA
        copied onto its flash, as `carbontrace provision` leaves a board."""
        cfg = self.cfg
        found: dict[str, Any] = {}
        if cfg.broker_ca is not None:
            shutil.copyfile(cfg.broker_ca, self.port.flash.path(BROKER_CA_FILE))
            found["broker_ca"] = BROKER_CA_FILE
        if cfg.credentials_file is not None:
            table = json.loads(Path(cfg.credentials_file).read_text())
            entry = table.get(self.spec.name)  # a forger's name is its own client id, never its victim's
            if entry is not None:
                found["broker_user"], found["broker_password"] = entry["username"], entry["password"]
        return found

    def boot(self) -> None:
        """Build the firmware's objects from flash, as ``main.py`` does on a board after a reset."""
        cfg = self.cfg
        overrides = {
            "broker_host": cfg.broker_host,
            "broker_port": cfg.broker_port,
            "site_id": cfg.site_id,
            "device_id": self.spec.device_id,
            "measure_interval_ms": cfg.interval_ms,
            "reconnect_max_ms": cfg.reconnect_max_ms,
            "keepalive_s": cfg.keepalive_s,
        }
        overrides.update(self._broker_auth())
        settings = device_config.load(self.port.flash, overrides)
        co2 = SCD4X(self.scd, sleep_ms=self._sensor_sleep_ms)
        try:
            # after a soft reset the sensor may still be measuring and would NACK the start command
            co2.stop_periodic_measurement()
            co2.start_periodic_measurement()
        except Exception:  # as on the board: a sensor that did not start shows in the flags
            pass
        meter = PZEM004T(UARTAdapter(self.pzem, baudrate=None, reply_delay_ms=1.0))
        mqtt = None
        if self.spec.client_id is not None:
            client = MQTTClient(
                self.spec.client_id,
                cfg.broker_host,
                cfg.broker_port,
                user=settings["broker_user"],
                password=settings["broker_password"],
                keepalive=settings["keepalive_s"],
                ssl=self.port.tls_context(settings["broker_ca"]) if settings["broker_ca"] else None,
                open_socket=self.port.open_socket,
                max_inflight=settings["max_inflight"],
            )
            mqtt = ResilientMQTT(
                client, self.port, backoff_min_ms=settings["reconnect_min_ms"],
                backoff_max_ms=settings["reconnect_max_ms"],
            )
        app = DeviceApp(self.port, settings, co2_sensor=co2, meter=meter, mqtt=mqtt, poll_interval_ms=cfg.poll_ms)
        if self.spec.kind == "impersonate":
            # its readings claim the victim's id; its status goes elsewhere, not over the victim's retained one
            app.status_topic = status_topic(cfg.site_id, self.spec.name)
        self.link = TamperingLink(app.mqtt, app.reading_topic, transform=self._tamper, on_sent=self._sent)
        app.mqtt = self.link
        app.on_reading = self._stored
        if not self.measuring:
            app.measure_limit = 0
        elif self.cfg.count is not None:
            app.measure_limit = max(0, self.cfg.count - self.stats.made)
        self.app = app
        self._boot_made = 0

    def _retire(self) -> None:
        """The process dies: no DISCONNECT (the broker publishes the last will), RAM state is gone."""
        app = self.app
        self.stats.acked_before += app.readings_acked
        self.stats.acked_now = 0
        app.mqtt.client.close()
        app.outbox.close()

    def reboot(self) -> None:
        self.stats.resent_after_reboot += self.app.outbox.depth()
        self._retire()
        self.stats.reboots += 1
        self.boot()

    def public_key_hex(self) -> str:
        key: str = self.app.key.public_key_hex()
        return key

    # --- hooks called by the firmware -----------------------------------------------------------------
    def _stored(self, seq: int, record_id: int) -> None:
        self.stats.made += 1
        self._boot_made += 1
        stored = Stored(seq, record_id, bytes(self.app.outbox.read(record_id)))
        self.history.append(stored)
        replay = self.plan.replay_after(self.spec.device_id, seq) if self.spec.kind == "genuine" else None
        if replay is None:
            return
        back, conflict = replay
        if back >= len(self.history):
            return
        target = self.history[-1 - back]
        # a replay must repeat something the gateway holds: not a tampered or clock-skewed reading
        if self.plan.tamper_mode(self.spec.device_id, target.seq) is not None or self._skewed(target.payload):
            return
        self.replays.append(PendingReplay(target, conflict))

    def _tamper(self, message: bytes) -> bytes:
        if self.spec.kind != "genuine" or self.plan.tamper_rate <= 0:
            return message
        seq = reading_seq(message)
        mode = self.plan.tamper_mode(self.spec.device_id, seq)
        if mode is None:
            return message
        return flip_byte(message, mode, self.plan.seed, self.spec.device_id, seq)

    def _sent(self, original: bytes, sent: bytes) -> None:
        stats = self.stats
        stats.sent += 1
        if self.spec.kind == "unknown":
            stats.expected["unknown_device"] += 1
        elif self.spec.kind == "impersonate":
            stats.expected["bad_signature"] += 1
        elif sent != original:
            seq = reading_seq(original)
            mode = self.plan.tamper_mode(self.spec.device_id, seq)
            assert mode is not None
            stats.tampered[mode] += 1
            stats.expected[expected_tamper_reason(mode)] += 1
            stats.withheld.add(seq)
        elif self._skewed(original):
            stats.skewed += 1
            stats.expected["clock_skew"] += 1
            stats.withheld.add(reading_seq(original))
        else:
            stats.delivered.add(reading_seq(original))

    def _skewed(self, message: bytes) -> bool:
        reading = decode_payload(bytes(cose.parse_sign1(message).payload))
        if reading.flags & FLAG_TIME_NOT_SYNCED or reading.timestamp is None:
            return False
        return abs(int(reading.timestamp) - int(time.time())) > self.cfg.skew_limit_s

    # --- injected messages ------------------------------------------------------------------------------
    def _pump_replays(self) -> None:
        while self.replays and self.app.mqtt.is_connected():
            replay = self.replays[0]
            if self.app.outbox.is_pending(replay.target.record_id):
                return  # not acknowledged yet: the broker may not have it
            payload = replay.target.payload
            if replay.conflict:
                payload = self._resign_changed(payload)
            assert self.link is not None
            if self.link.publish_raw(self.app.reading_topic, payload, qos=1) is None:
                return
            self.replays.pop(0)
            if replay.conflict:
                self.stats.replayed_conflict += 1
                self.stats.expected["seq_conflict"] += 1
            else:
                self.stats.replayed_duplicate += 1
                self.stats.expected["duplicate"] += 1

    def _resign_changed(self, message: bytes) -> bytes:
        """The same seq signed again (a valid signature) over other content: one second later."""
        old = decode_payload(bytes(cose.parse_sign1(message).payload))
        later = old.timestamp is not None
        changed = Reading(
            old.device_id, old.seq, old.timestamp + 1 if old.timestamp is not None else None, old.firmware,
            flags=old.flags, co2_ppm=old.co2_ppm, temperature_centi_c=old.temperature_centi_c,
            humidity_centi_pct=old.humidity_centi_pct, energy_wh=old.energy_wh, power_deci_w=old.power_deci_w,
            boot=old.boot, up=old.up if later or old.up is None else old.up + 1,
        )
        return bytes(self.app.key.sign_reading(changed))

    # --- the loop -------------------------------------------------------------------------------------
    def _apply_timed_faults(self, elapsed_s: float) -> None:
        outage = self.plan.broker_outage
        if outage is not None:
            active = outage.active(elapsed_s)
            if active and not self._link_cut:
                self.port.cut_link()
                self._link_cut = True
            elif not active and self._link_cut:
                self.port.restore_link()
                self._link_cut = False
        jump = self.plan.clock_jump
        if self.clock_jumps and jump is not None and not self._jumped and jump.started(elapsed_s):
            self.port.clock_offset_s = int(jump.seconds)
            self._jumped = True

    def stop_measuring(self) -> None:
        self.measuring = False
        self.app.measure_limit = self.app.readings_made

    def _update_stats(self) -> None:
        stats = self.stats
        stats.acked_now = self.app.readings_acked
        stats.outbox = self.app.outbox.depth()
        stats.max_outbox = max(stats.max_outbox, stats.outbox)
        stats.dropped = self.app.outbox.dropped

    def _trim_emulator_logs(self) -> None:
        for log in (self.scd.transfers, self.scd.commands, self.pzem.requests):
            if len(log) > 2 * EMULATOR_LOG_KEEP:
                del log[:-EMULATOR_LOG_KEEP]

    def _reboot_due(self) -> bool:
        every = self.plan.reboot_every
        return self.spec.kind == "genuine" and every > 0 and self._boot_made >= every

    def run(self, started: float, stop: threading.Event, abort: threading.Event) -> None:
        """Run until measuring is over (count reached or ``stop`` set) and the outbox drained, or ``abort``."""
        drain_deadline: float | None = None
        try:
            while not abort.is_set():
                now = time.monotonic()
                self._apply_timed_faults(now - started)
                self.app.run_once()
                self._pump_replays()
                self._update_stats()
                self._trim_emulator_logs()
                if self.measuring and (stop.is_set() or (
                        self.cfg.count is not None and self.stats.made >= self.cfg.count)):
                    self.stop_measuring()
                if not self.measuring:
                    if drain_deadline is None:
                        drain_deadline = now + self.cfg.drain_timeout_s
                    drained = self.app.outbox.depth() == 0 and not self.replays
                    if drained or now >= drain_deadline:
                        break
                elif self._reboot_due():
                    self.reboot()
                    continue
                self.port.sleep_ms(self.cfg.poll_ms)
        except Exception as err:  # one broken device must not take the fleet down; the report says why
            self.stats.error = f"{type(err).__name__}: {err}"
        finally:
            try:
                self._update_stats()
                self.app.shutdown()
            except Exception as err:
                self.stats.error = self.stats.error or f"shutdown: {type(err).__name__}: {err}"
            self.stats.finished = True


@dataclass(frozen=True)
class FleetSnapshot:
    elapsed_s: float
    devices: int
    made: int
    sent: int
    acked: int
    outbox: int
    dropped: int
    reboots: int
    tampered: int
    replayed: int
    forged_sent: int
    skewed: int
    expected: dict[str, int]
    expected_gaps: int  # readings the gateway must count missing because their only copies were rejected
    rejected: dict[str, int] | None  # the gateway's counted rejections by reason, when it can be asked
    errors: dict[str, str]
    finished: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


Rejections = Callable[[], dict[str, int]]


def device_specs(cfg: FleetConfig) -> list[DeviceSpec]:
    """Every device the fleet runs, genuine ones first: what to issue broker credentials for (by ``name``, on
    the topics of ``device_id``; a forger that claims a victim's id is the holder of stolen broker access)."""
    prefix = cfg.device_prefix
    genuine = [DeviceSpec(f"{prefix}-{i:03d}", i, SCENARIOS[i % len(SCENARIOS)]) for i in range(cfg.devices)]
    forged: list[DeviceSpec] = []
    for k in range(cfg.faults.forged_devices):
        index = cfg.devices + k
        scenario = SCENARIOS[index % len(SCENARIOS)]
        if cfg.faults.forged_kind(k) == "unknown":
            forged.append(DeviceSpec(f"{prefix}-forged-{k:02d}", index, scenario, kind="unknown"))
        else:
            victim = genuine[(k // 2) % len(genuine)].device_id
            forged.append(DeviceSpec(victim, index, scenario, kind="impersonate",
                                     client_id=f"{prefix}-forger-{k:02d}"))
    return genuine + forged


class Fleet:
    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cfg.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ct-fleet-")
            workdir = Path(self._tmp.name)
        else:
            workdir = cfg.workdir
        self.workdir = workdir
        specs = device_specs(cfg)
        genuine = [spec for spec in specs if spec.kind == "genuine"]
        forged = [spec for spec in specs if spec.kind != "genuine"]
        # Booting waits on the sensor's stop command (500 ms sensor time) and derives a key: in parallel.
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            built = list(pool.map(lambda spec: SimDevice(spec, cfg, workdir / spec.name), genuine + forged))
        self.devices = built[: len(genuine)]
        self.forged = built[len(genuine) :]
        jump = cfg.faults.clock_jump_device(len(self.devices))
        if jump is not None:
            self.devices[jump].clock_jumps = True
        self.started: float | None = None
        self._stop = threading.Event()
        self._abort = threading.Event()

    @property
    def all_devices(self) -> list[SimDevice]:
        return self.devices + self.forged

    def public_keys(self) -> dict[str, str]:
        """device id -> 65-byte SEC1 public key (hex) of every genuine device, for registration."""
        return {d.spec.device_id: d.public_key_hex() for d in self.devices}

    def clock_jump_device(self) -> str | None:
        return next((d.spec.device_id for d in self.devices if d.clock_jumps), None)

    def snapshot(self, rejections: Rejections | None = None) -> FleetSnapshot:
        elapsed = 0.0 if self.started is None else time.monotonic() - self.started
        every = [d.stats for d in self.all_devices]
        genuine = [d.stats for d in self.devices]
        expected: collections.Counter[str] = collections.Counter()
        for stats in every:
            expected.update(dict(stats.expected))  # dict() copies atomically; the device thread adds keys
        rejected = None
        if rejections is not None:
            try:
                rejected = dict(rejections())
            except Exception:  # the gateway may be down or restarting; the summary goes on without it
                rejected = None
        return FleetSnapshot(
            elapsed_s=elapsed,
            devices=len(self.devices),
            made=sum(s.made for s in genuine),
            sent=sum(s.sent for s in genuine),
            acked=sum(s.acked for s in genuine),
            outbox=sum(s.outbox for s in genuine),
            dropped=sum(s.dropped for s in genuine),
            reboots=sum(s.reboots for s in genuine),
            tampered=sum(sum(dict(s.tampered).values()) for s in genuine),
            replayed=sum(s.replayed_duplicate + s.replayed_conflict for s in genuine),
            forged_sent=sum(d.stats.sent for d in self.forged),
            skewed=sum(s.skewed for s in genuine),
            expected=dict(expected),
            expected_gaps=sum(s.expected_gaps() for s in genuine),
            rejected=rejected,
            errors={d.spec.name: d.stats.error for d in self.all_devices if d.stats.error},
            finished=sum(1 for s in every if s.finished),
        )

    def stop(self) -> None:
        """End measuring now; devices still deliver what their outboxes hold (up to the drain timeout)."""
        self._stop.set()

    def abort(self) -> None:
        self._stop.set()
        self._abort.set()

    def run(
        self,
        on_progress: Callable[[FleetSnapshot], None] | None = None,
        progress_interval_s: float = 1.0,
        rejections: Rejections | None = None,
        register: Callable[[dict[str, str]], None] | None = None,
    ) -> FleetSnapshot:
        """Run the fleet to the end; ``register(public_keys)`` first, ``on_progress`` periodically."""
        if register is not None:
            register(self.public_keys())
        self.started = started = time.monotonic()
        threads = [
            threading.Thread(target=d.run, args=(started, self._stop, self._abort), name=d.spec.name, daemon=True)
            for d in self.all_devices
        ]
        for thread in threads:
            thread.start()
        next_progress = started
        try:
            while any(t.is_alive() for t in threads):
                now = time.monotonic()
                if self.cfg.duration_s is not None and now - started >= self.cfg.duration_s:
                    self._stop.set()
                if on_progress is not None and now >= next_progress:
                    on_progress(self.snapshot(rejections))
                    next_progress = now + progress_interval_s
                time.sleep(0.05)
        except KeyboardInterrupt:
            self.abort()
            raise
        finally:
            for thread in threads:
                thread.join(timeout=self.cfg.drain_timeout_s + 5)
        final = self.snapshot(rejections)
        if on_progress is not None:
            on_progress(final)
        return final

    def close(self) -> None:
        for device in self.all_devices:
            if not device.stats.finished:  # never ran (or aborted): release its flash files
                device.app.outbox.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
