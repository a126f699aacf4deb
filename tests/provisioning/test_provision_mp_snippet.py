"""The board-side prepare snippet of the device plan, run under real MicroPython (the WebAssembly port)."""

from __future__ import annotations

import json

from carbontrace.provision_plan import PREPARE_SNIPPET
from tests.micropython.mp_runner import run_micropython_ok

SETUP = """import os
for d in ('/lib', '/lib/carbontrace_device', '/lib/carbontrace_device/ports', '/lib/carbontrace_protocol',
          '/lib/umqtt', '/data'):
    try:
        os.mkdir(d)
    except OSError:
        pass
for f in ('/main.py', '/lib/carbontrace_device/app.mpy', '/lib/carbontrace_device/ports/board.mpy',
          '/lib/carbontrace_protocol/p256.mpy', '/lib/umqtt/simple.py', '/data/device_key.bin',
          '/data/config.json'):
    with open(f, 'w') as h:
        h.write('x')
"""

REPORT = """
import json
def exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
paths = ('/main.py', '/lib', '/data', '/lib/carbontrace_device', '/lib/carbontrace_protocol', '/lib/umqtt/simple.py',
         '/data/device_key.bin', '/data/config.json')
print(json.dumps(dict((p, exists(p)) for p in paths)))
"""


def test_prepare_removes_the_old_app_and_keeps_the_key() -> None:
    # Run twice: on a board with an old install, then again on the result (re-running is harmless).
    out = run_micropython_ok(SETUP + PREPARE_SNIPPET + PREPARE_SNIPPET + REPORT)
    state = json.loads(out.strip().splitlines()[-1])
    assert state == {
        "/main.py": False,
        "/lib": True,
        "/data": True,
        "/lib/carbontrace_device": False,
        "/lib/carbontrace_protocol": False,
        "/lib/umqtt/simple.py": True,  # other libraries stay
        "/data/device_key.bin": True,  # the device identity stays
        "/data/config.json": True,
    }


def test_prepare_on_a_blank_board() -> None:
    out = run_micropython_ok(PREPARE_SNIPPET + "import os\nprint(sorted(os.listdir('/lib')), sorted(os.listdir('/data')))")
    assert out.strip().splitlines()[-1] == "[] []"
