"""The device application: measure, sign, store, publish. MicroPython-safe.

``DeviceApp`` takes its collaborators: the port (``ports.board``, or ``simulators.host_port`` on a host),
validated settings (``config.load``), a CO2 sensor (``data_ready()``, ``read_measurement()`` -> (co2_ppm,
temperature_centi_c, humidity_centi_pct)) and an energy meter (``read()`` -> object with ``energy_wh`` and
``power_deci_w``); either may be None and either may raise. Outbox, sequence store, key, clock and MQTT
link are built from the port unless passed in.

One cycle: sign a ``Reading`` with the next sequence number, append it to the flash outbox, and only
then publish it (QoS 1) on ``carbontrace/v1/{site}/{device}/reading``; a PUBACK removes it from the
outbox. A chamber session (``start_chamber``) measures at ``chamber_interval_ms`` while the chamber is
closed, keeps those readings as its samples (carbontrace_device/chamber.py), and when it is over signs one
chamber flux record with the same key, appends it to its own flash outbox and publishes it on
``carbontrace/v1/{site}/{device}/flux``. ``run_once()`` does one non-blocking step (network, measurement
when due, outbox pump, status, watchdog, gc); ``run_forever()`` repeats it.
"""

import json

from carbontrace_device.chamber import FAILED_NO_GEOMETRY, FAILED_TIME_NOT_SYNCED, ChamberFailed, ChamberSession
from carbontrace_device.config_defaults import FIRMWARE_VERSION
from carbontrace_device.keystore import DeviceKey
from carbontrace_device.mqtt_client import MQTTClient
from carbontrace_device.outbox import Outbox
from carbontrace_device.resilient_mqtt import ResilientMQTT
from carbontrace_device.seqstore import BootCounter, SeqStore
from carbontrace_device.timekeeping import Clock
from carbontrace_protocol.reading import (
    FLAG_CO2_SENSOR_FAULT,
    FLAG_METER_FAULT,
    FLAG_METER_RESET,
    MEASUREMENTS,
    Reading,
)
from carbontrace_protocol.topics import MAX_FLUX_BYTES, flux_topic, reading_topic, status_topic

FLUX_OUTBOX_FILE = "flux_outbox.dat"
# slot header (16 bytes) + the largest signed flux record, rounded up to 32 bytes
FLUX_SLOT_SIZE = (16 + MAX_FLUX_BYTES + 31) // 32 * 32


def _values_in_range(values):
    """True if every non-None value lies in the reading format's range for its field."""
    for name, _unit, attr, _exp, low, high in MEASUREMENTS:
        value = values.get(attr)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return False
    return True


class DeviceApp:
    def __init__(
        self,
        port,
        settings,
        co2_sensor=None,
        meter=None,
        firmware=FIRMWARE_VERSION,
        mqtt=None,
        outbox=None,
        seqstore=None,
        key=None,
        clock=None,
        poll_interval_ms=20,
        boot=None,
        flux_outbox=None,
    ):
        self.port = port
        self.settings = settings
        self.co2_sensor = co2_sensor
        self.meter = meter
        self.firmware = firmware
        self.poll_interval_ms = poll_interval_ms
        self.device_id = settings["device_id"] or ("ct-" + port.machine_id())
        self.site_id = settings["site_id"]
        self.reading_topic = reading_topic(self.site_id, self.device_id)
        self.status_topic = status_topic(self.site_id, self.device_id)
        self.flux_topic = flux_topic(self.site_id, self.device_id)
        self.outbox = outbox or Outbox(port.flash, budget_bytes=settings["outbox_budget_bytes"])
        self.flux_outbox = flux_outbox or Outbox(
            port.flash, FLUX_OUTBOX_FILE, budget_bytes=settings["flux_outbox_budget_bytes"], slot_size=FLUX_SLOT_SIZE
        )
        self.seqstore = seqstore or SeqStore(port.flash, block=settings["seq_block"])
        self.key = key or DeviceKey(port)
        self.clock = clock or Clock(port, settings["ntp_host"])
        # this power-up's number, counted once per boot in flash (pass ``boot`` to share one counter)
        self.boot = BootCounter(port.flash).boot if boot is None else boot
        self._inflight = {}  # packet id -> outbox record id
        self._inflight_records = {}  # outbox record id -> packet id
        self._inflight_flux = {}  # the same two for the flux outbox
        self._inflight_flux_records = {}
        self._cycle_start = None  # ticks when the current measurement cycle began
        self._next_cycle = None  # ticks when the next cycle is due; None: now
        self._last_energy = None
        self._status_due = True
        self._last_status = None
        self.readings_made = 0
        self.readings_acked = 0
        self.last_seq = None
        self.on_reading = None  # optional hook f(seq, record_id) after a reading is durably stored
        self.measure_limit = None  # stop measuring after this many readings (None: never)
        self.chamber = None  # the open ChamberSession, if a chamber is closed now
        self.fluxes_made = 0
        self.fluxes_acked = 0
        self.last_flux = None  # the last Flux record signed
        self.chamber_failures = {}  # reason -> sessions that gave no record
        self.on_flux = None  # optional hook f(flux, record_id) after a flux record is durably stored
        self._last_gc = None
        self.stopped = False
        if mqtt is None:
            client = MQTTClient(
                self.device_id,
                settings["broker_host"],
                settings["broker_port"],
                user=settings["broker_user"],
                password=settings["broker_password"],
                keepalive=settings["keepalive_s"],
                ssl=port.tls_context(settings["broker_ca"]) if settings.get("broker_ca") else None,
                open_socket=port.open_socket,
                max_inflight=settings["max_inflight"],
            )
            client.set_last_will(self.status_topic, self._status_json("offline"), retain=True, qos=1)
            mqtt = ResilientMQTT(
                client,
                port,
                settings["wifi_ssid"],
                settings["wifi_password"],
                clean_session=False,
                backoff_min_ms=settings["reconnect_min_ms"],
                backoff_max_ms=settings["reconnect_max_ms"],
            )
        self.mqtt = mqtt
        mqtt.on_connect = self._on_connect
        mqtt.client.set_puback_callback(self._on_puback)

    # --- status -------------------------------------------------------------------------------
    def _status_json(self, state):
        # The last will is built once at start-up: its counters are those of that moment.
        return json.dumps(
            {
                "state": state,
                "device": self.device_id,
                "fw": self.firmware,
                "heap": self.port.free_heap(),
                "outbox": self.outbox.depth(),
                "dropped": self.outbox.dropped,
                "seq": self.last_seq,
                "boot": self.boot,
                "time_synced": self.clock.is_synced(),
            }
        )

    def _on_connect(self, session_present):
        self._status_due = True
        self._publish_status()

    def _publish_status(self, state="online"):
        pid = self.mqtt.publish(self.status_topic, self._status_json(state), retain=True, qos=1)
        if pid is not None:
            self._status_due = False
            self._last_status = self.port.ticks_ms()
        return pid

    def request_status(self):
        """Publish a status message at the next step."""
        self._status_due = True

    def _status_if_due(self):
        if not self._status_due and self._last_status is not None:
            since = self.port.ticks_diff(self.port.ticks_ms(), self._last_status)
            if since >= self.settings["status_interval_ms"]:
                self._status_due = True
        if self._status_due:
            self._publish_status()

    # --- delivery -----------------------------------------------------------------------------
    def _on_puback(self, pid):
        record_id = self._inflight_flux.pop(pid, None)
        if record_id is not None:
            self._inflight_flux_records.pop(record_id, None)
            if self.flux_outbox.ack(record_id):
                self.fluxes_acked += 1
            return
        record_id = self._inflight.pop(pid, None)
        if record_id is None:
            return  # a status message
        self._inflight_records.pop(record_id, None)
        if self.outbox.ack(record_id):
            self.readings_acked += 1

    def _pump(self):
        """Publish pending flux and reading records, oldest first, while the in-flight window has room."""
        self._pump_box(self.flux_outbox, self.flux_topic, self._inflight_flux, self._inflight_flux_records)
        self._pump_box(self.outbox, self.reading_topic, self._inflight, self._inflight_records)

    def _pump_box(self, outbox, topic, inflight, inflight_records):
        client = self.mqtt.client
        # Cheap exits first: this runs every step and pending() copies the queue. (A record dropped from a
        # full outbox while in flight still counts here until its PUBACK; that only delays the next send.)
        if client.inflight_free() <= 0 or outbox.depth() <= len(inflight_records):
            return
        for record_id in outbox.pending():
            if client.inflight_free() <= 0 or not self.mqtt.is_connected():
                return
            if record_id in inflight_records:
                continue
            payload = outbox.read(record_id)
            if payload is None:
                outbox.discard(record_id)
                continue
            pid = self.mqtt.publish(topic, payload, qos=1)
            if pid is None:
                return
            inflight[pid] = record_id
            inflight_records[record_id] = pid

    # --- measurement --------------------------------------------------------------------------
    def _cycle_due(self, now):
        if self._cycle_start is not None:
            return True
        if self._next_cycle is not None and self.port.ticks_diff(now, self._next_cycle) < 0:
            return False
        self._cycle_start = now
        return True

    def _co2_ready(self, now):
        """True/False once known; None while still waiting for the sensor's next sample."""
        try:
            if self.co2_sensor.data_ready():
                return True
        except Exception:
            return False
        waited = self.port.ticks_diff(now, self._cycle_start)
        return None if waited < self.settings["co2_ready_timeout_ms"] else False

    def measure_if_due(self):
        """Take the measurement when due; returns the seq of a stored reading, or None."""
        if self.measure_limit is not None and self.readings_made >= self.measure_limit:
            return None
        port = self.port
        now = port.ticks_ms()
        if not self._cycle_due(now):
            return None
        values = {}
        flags = 0
        if self.co2_sensor is not None:
            ready = self._co2_ready(now)
            if ready is None:
                return None
            co2 = None
            if ready:
                try:
                    co2 = self.co2_sensor.read_measurement()
                except Exception:  # any driver or bus failure is this cycle's sensor fault, not a crash
                    co2 = None
            group = None
            if co2 is not None:
                group = {"co2_ppm": co2[0], "temperature_centi_c": co2[1], "humidity_centi_pct": co2[2]}
            if group is not None and _values_in_range(group):
                values.update(group)
            else:
                flags |= FLAG_CO2_SENSOR_FAULT
        if self.meter is not None:
            group = None
            try:
                measurement = self.meter.read()
                group = {"energy_wh": measurement.energy_wh, "power_deci_w": measurement.power_deci_w}
            except Exception:  # any driver or bus failure is this cycle's meter fault, not a crash
                group = None
            if group is not None and _values_in_range(group):
                values.update(group)
                energy = group["energy_wh"]
                went_back = energy is not None and self._last_energy is not None and energy < self._last_energy
                # a meter that knows it restarted from 0 (no saved total after a reboot) says so itself
                if went_back or getattr(measurement, "reset", False):
                    flags |= FLAG_METER_RESET
                if energy is not None:
                    self._last_energy = energy
            else:
                flags |= FLAG_METER_FAULT
        self._schedule_next(now)
        return self._store(flags, values)

    def _schedule_next(self, now):
        # Fixed rate from the cycle start; after a long stall, restart the schedule from now. A closed chamber
        # is sampled at its own, faster rate.
        interval = self.settings["chamber_interval_ms" if self.chamber is not None else "measure_interval_ms"]
        start = self._cycle_start
        self._cycle_start = None
        next_cycle = self.port.ticks_add(start, interval)
        if self.port.ticks_diff(now, next_cycle) >= interval:
            next_cycle = self.port.ticks_add(now, interval)
        self._next_cycle = next_cycle

    def _store(self, flags, values):
        timestamp, time_flags, up = self.clock.stamp()
        seq = self.seqstore.next()
        reading = Reading(self.device_id, seq, timestamp, self.firmware, flags=flags | time_flags, boot=self.boot,
                          up=up, **values)
        record_id = self.outbox.append(self.key.sign_reading(reading))
        self.readings_made += 1
        self.last_seq = seq
        if self.on_reading is not None:
            self.on_reading(seq, record_id)
        chamber = self.chamber
        if chamber is not None:
            chamber.add(reading)
            if chamber.over(timestamp if timestamp is not None else self.port.wall_time()):
                self._finish_chamber()
        return seq

    # --- chamber sessions ---------------------------------------------------------------------
    def start_chamber(self, volume_ml=None, area_cm2=None, pressure_pa=None, duration_s=None):
        """The chamber has just closed: sample it from now for ``duration_s`` (defaults from the settings).

        Returns False (counted as ``time_not_synced``) when the clock has no wall time: a flux needs the
        samples' times. The next reading is taken at once."""
        settings = self.settings
        volume_ml = volume_ml or settings["chamber_volume_ml"]
        area_cm2 = area_cm2 or settings["chamber_area_cm2"]
        if volume_ml is None or area_cm2 is None:
            self._count_failure(FAILED_NO_GEOMETRY)
            return False
        closed_at = self.port.wall_time()
        if closed_at is None:
            self._count_failure(FAILED_TIME_NOT_SYNCED)
            return False
        self.chamber = ChamberSession(
            closed_at,
            duration_s or settings["chamber_duration_s"],
            volume_ml,
            area_cm2,
            pressure_pa or settings["chamber_pressure_pa"],
        )
        self._next_cycle = None
        return True

    def _count_failure(self, reason):
        self.chamber_failures[reason] = self.chamber_failures.get(reason, 0) + 1

    def _finish_chamber(self):
        chamber = self.chamber
        self.chamber = None
        try:
            record = chamber.flux(self.device_id, self.firmware)
        except ChamberFailed as failed:
            self._count_failure(failed.reason)
            return None
        record_id = self.flux_outbox.append(self.key.sign_flux(record))
        self.fluxes_made += 1
        self.last_flux = record
        if self.on_flux is not None:
            self.on_flux(record, record_id)
        return record

    # --- the loop -----------------------------------------------------------------------------
    def run_once(self):
        port = self.port
        port.feed_watchdog()
        connected = self.mqtt.poll()
        if connected:
            self.clock.sync_if_due()
        measured = self.measure_if_due() is not None
        if self.mqtt.is_connected():
            self._status_if_due()
            self._pump()
        port.feed_watchdog()
        # Collect between measurement cycles (signing leaves big-integer garbage) and at least once a
        # second, not every step: a full collection costs milliseconds on a board.
        now = port.ticks_ms()
        if measured or self._last_gc is None or port.ticks_diff(now, self._last_gc) >= 1000:
            port.collect_garbage()
            self._last_gc = now

    def run_forever(self, max_readings=None):
        """Loop until ``stop()``; with ``max_readings``, until that many are made and delivered."""
        if max_readings is not None:
            self.measure_limit = max_readings
        while not self.stopped:
            self.run_once()
            if max_readings is not None and self.readings_made >= max_readings and self.outbox.depth() == 0:
                break
            self.port.sleep_ms(self.poll_interval_ms)

    def stop(self):
        self.stopped = True

    def shutdown(self):
        """Announce "offline" and disconnect cleanly (the broker then does not publish the will)."""
        if self.mqtt.is_connected():
            self._publish_status("offline")
            self.mqtt.disconnect()
        self.outbox.close()
        self.flux_outbox.close()
