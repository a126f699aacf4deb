"""The firmware manifest: exactly what `make firmware` puts on a board (scripts/build_firmware.py).

As micropython-lib's manifest.py does, it names the modules one by one: a file added to firmware/ reaches a
board only once it is listed here, and host-only code (simulators/host_port.py, simulators/device_host.py,
which import the simulators) never does. tests/micropython/test_mpy_cross.py checks that the built set is
exactly this list, that every file of the device package is listed, and that every listed module imports
only the listed modules and MicroPython's own (MICROPYTHON_MODULES). Not run on the board.
"""

DEVICE_PACKAGE = "carbontrace_device"
# paths inside firmware/carbontrace_device, without ".py"
DEVICE_MODULES = (
    "__init__",
    "app",
    "chamber",
    "config",
    "config_defaults",
    "crc",
    "energy",
    "flashfs",
    "keystore",
    "mqtt_client",
    "outbox",
    "ports/__init__",
    "ports/board",
    "pzem004t",
    "resilient_mqtt",
    "s0_counter",
    "scd4x",
    "sensor_errors",
    "seqstore",
    "timekeeping",
)
PROTOCOL_PACKAGE = "carbontrace_protocol"
# the MicroPython-safe protocol modules (the rest of the package is CPython only: verify, cid, batch, ...)
PROTOCOL_MODULES = (
    "__init__", "errors", "cbor", "p256", "p256_table", "p256_thumb", "cose", "reading", "merkle", "topics", "flux",
)
# modules compiled to machine code for one architecture (inline assembler), whatever --arch says; a board of
# another architecture refuses the .mpy at import, and the importer falls back to portable code
NATIVE_MODULES = {"carbontrace_protocol/p256_thumb": "armv6m"}
# copied as source to the filesystem root: the board runs them
BOARD_SCRIPTS = ("main.py",)
# what a listed module may import besides the listed modules: MicroPython's built-in modules, and typing
# (imported only under `if TYPE_CHECKING:`, never on the board)
MICROPYTHON_MODULES = (
    "binascii",
    "gc",
    "hashlib",
    "json",
    "machine",
    "micropython",
    "network",
    "ntptime",
    "os",
    "socket",
    "ssl",
    "struct",
    "sys",
    "time",
    "tls",
    "typing",
)
