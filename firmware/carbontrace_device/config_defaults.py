"""Default device settings. Secrets are never set here: they come from the override file on flash.

Override any key with a JSON object in ``config.json`` on the flash root (``/data/config.json`` on the
board); see firmware/README.md.
"""

FIRMWARE_VERSION = "0.1.0"

DEFAULTS = {
    "wifi_ssid": None,
    "wifi_password": None,
    "broker_host": "192.168.4.1",
    "broker_port": 1883,
    "broker_user": None,
    "broker_password": None,
    # A file on the flash root with the broker's CA certificate (PEM, from `carbontrace provision`): the device
    # then speaks TLS to the broker and trusts that CA only. The production broker has no plain listener.
    "broker_ca": None,
    "site_id": "site-1",
    "device_id": None,  # None: "ct-" + the board's unique id
    "ntp_host": "pool.ntp.org",
    "measure_interval_ms": 60000,
    "status_interval_ms": 300000,
    "co2_ready_timeout_ms": 6000,  # SCD4x periodic mode delivers every 5 s
    "keepalive_s": 60,
    "reconnect_min_ms": 250,
    "reconnect_max_ms": 30000,
    "max_inflight": 8,
    "outbox_budget_bytes": 256 * 1024,
    "flux_outbox_budget_bytes": 32 * 1024,  # signed chamber flux records waiting for PUBACK (60 of them)
    # a closed chamber (carbontrace_device/chamber.py): sampled every chamber_interval_ms (the SCD4x gives a
    # value every 5 s) for chamber_duration_s; its headspace volume, covered area and the air pressure
    "chamber_interval_ms": 5000,
    "chamber_duration_s": 180,
    "chamber_volume_ml": None,
    "chamber_area_cm2": None,
    "chamber_pressure_pa": 101325,
    "seq_block": 64,
    "watchdog_ms": 30000,
    "co2_sensor": "scd4x",  # "scd4x" | "none"
    "meter": "pzem",  # "pzem" | "s0" | "none"
    "s0_pin": 4,
    "s0_pulses_per_kwh": 1000,
    "s0_debounce_ms": 20,  # an edge closer than this to the last pulse is bounce (S0 pulses last >= 30 ms)
    # SCD4x automatic self-calibration: off where the sensor never sees fresh air (greenhouses, chambers)
    "scd4x_self_calibration": True,
    "i2c_id": 0,
    "i2c_scl": 22,
    "i2c_sda": 21,
    "uart_id": 1,
    "uart_tx": 17,
    "uart_rx": 16,
}
