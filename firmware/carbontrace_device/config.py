"""Device configuration: ``config_defaults.DEFAULTS`` overridden by a JSON file on flash. MicroPython-safe.

Validated at start-up so a bad setting fails fast with its name, instead of at the first reading.
``redacted()`` is the form that may be logged or published.
"""

import json

from carbontrace_device.config_defaults import DEFAULTS
from carbontrace_protocol.reading import valid_device_id

CONFIG_FILE = "config.json"
SECRET_KEYS = ("wifi_password", "broker_password")
_CHOICES = {"co2_sensor": ("scd4x", "none"), "meter": ("pzem", "s0", "none")}
_POSITIVE_INTS = (
    "broker_port",
    "measure_interval_ms",
    "status_interval_ms",
    "max_inflight",
    "outbox_budget_bytes",
    "flux_outbox_budget_bytes",
    "chamber_interval_ms",
    "chamber_duration_s",
    "chamber_pressure_pa",
    "seq_block",
    "watchdog_ms",
    "s0_pulses_per_kwh",
    "reconnect_min_ms",
    "reconnect_max_ms",
)
_BOOLEANS = ("scd4x_self_calibration",)
_OPTIONAL_STRINGS = ("wifi_ssid", "wifi_password", "broker_user", "broker_password", "broker_ca", "device_id")


class ConfigError(ValueError):
    pass


def _check_topic_level(name, value):
    if not isinstance(value, str) or not value:
        raise ConfigError("%s must be a non-empty string" % name)
    for ch in "/+#":
        if ch in value:
            raise ConfigError("%s must not contain %r (it is an MQTT topic level)" % (name, ch))


def validate(settings):
    for key in settings:
        if key not in DEFAULTS:
            raise ConfigError("unknown setting %r" % key)
    for key in _POSITIVE_INTS:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError("%s must be a positive integer, got %r" % (key, value))
    for key in ("keepalive_s", "co2_ready_timeout_ms", "s0_debounce_ms"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError("%s must be a non-negative integer, got %r" % (key, value))
    for key in ("chamber_volume_ml", "chamber_area_cm2"):  # no chamber unless both are set
        value = settings[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError("%s must be a positive integer or null, got %r" % (key, value))
    for key in _BOOLEANS:
        if not isinstance(settings[key], bool):
            raise ConfigError("%s must be true or false, got %r" % (key, settings[key]))
    for key in _OPTIONAL_STRINGS:
        if settings[key] is not None and not isinstance(settings[key], str):
            raise ConfigError("%s must be a string or null" % key)
    for key in _CHOICES:
        if settings[key] not in _CHOICES[key]:
            raise ConfigError("%s must be one of %s, got %r" % (key, "/".join(_CHOICES[key]), settings[key]))
    if not isinstance(settings["broker_host"], str) or not settings["broker_host"]:
        raise ConfigError("broker_host must be a non-empty string")
    _check_topic_level("site_id", settings["site_id"])
    if settings["device_id"] is not None:
        _check_topic_level("device_id", settings["device_id"])
        if not valid_device_id(settings["device_id"]):
            raise ConfigError("device_id must be 1-64 characters of [A-Za-z0-9-._]")
    return settings


def load(flash=None, overrides=None, name=CONFIG_FILE):
    """Defaults, then the JSON file on ``flash`` (if any), then ``overrides``; validated."""
    settings = dict(DEFAULTS)
    if flash is not None:
        raw = flash.read(name)
        if raw is not None:
            try:
                from_file = json.loads(raw)
            except ValueError:
                raise ConfigError("%s is not valid JSON" % flash.path(name))
            if not isinstance(from_file, dict):
                raise ConfigError("%s must hold a JSON object" % flash.path(name))
            settings.update(from_file)
    if overrides:
        settings.update(overrides)
    return validate(settings)


def redacted(settings):
    safe = dict(settings)
    for key in SECRET_KEYS:
        if safe.get(key) is not None:
            safe[key] = "***"
    return safe
