"""The bare reference's subscriber, in a process of its own (as the gateway is): subscribes at QoS 1, counts
``count`` messages, prints the ``time.monotonic()`` of the last one (one clock for every process here).

Its settings come on stdin as JSON (host, port, ca_file, username, password, topic, count), never on the
command line, which every user of the machine can read. It prints ``ready`` once subscribed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from carbontrace.broker_config import Credentials, MqttAccess


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    config = json.loads(sys.stdin.readline())
    access = MqttAccess(config["host"], int(config["port"]), Path(config["ca_file"]),
                        Credentials(config["username"], config["password"]))
    count = int(config["count"])
    received = 0
    last = 0.0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: Any, userdata: object, message: Any) -> None:
        nonlocal received, last
        received += 1
        if received == count:
            last = time.monotonic()
            done.set()

    client = access.paho()
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(access.host, access.port)
    client.loop_start()
    try:
        client.subscribe(config["topic"], qos=1)
        if not subscribed.wait(10):
            _say("error: not subscribed")
            return 1
        _say("ready")
        if not done.wait(float(config.get("timeout_s", 120))):
            _say(f"error: got {received}/{count}")
            return 1
        _say(f"{last:.6f}")
        return 0
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
