"""The embedded MQTT broker: amqtt in its own process on loopback, for machines without Mosquitto.

`start_broker` picks Mosquitto when its binary is installed and this broker otherwise (or whichever one is
asked for). `EmbeddedBroker` has the interface of `carbontrace.servers.Mosquitto` (``workdir``, ``port``,
``start()``, ``stop(kill=False)``, ``restart()``) and runs ``python -m carbontrace.embedded_broker`` as a
separate OS process with its own asyncio loop, so stopping or killing it is what it would be for a real broker.

Configuration (amqtt's config dict): one TCP listener bound to 127.0.0.1 only (never amqtt's default
0.0.0.0:1883), no websocket listener, no $SYS or logging plugins, and `LoopbackAuthPlugin`, which lets
every client in without credentials like Mosquitto's ``allow_anonymous true``.

What it carries (tests/demo/test_embedded_broker.py): QoS 0 and 1 in both directions, persistent sessions
(clean_session=False) with their subscriptions, QoS 1 messages queued for a disconnected persistent session
and delivered in order when it reconnects, QoS 1 messages a client received but never acknowledged sent again
(DUP) when it reconnects, retained messages, last wills (on a dead socket and on keepalive expiry), the
gateway's manual acknowledgements, and the whole demo.

Stock amqtt 0.12.1 gets four things wrong; the broker process fixes them (checked against 0.12.1, the
pinned version; `serve` warns on any other):
- `LoopbackAuthPlugin` instead of amqtt's AnonymousAuthPlugin, which marks every client ``is_anonymous``:
  amqtt then neither queues QoS 1 messages for a disconnected persistent session nor keeps the session.
- `keep_unacknowledged_deliveries`: amqtt drops a QoS 1 message sent to a client that disconnects before its
  PUBACK or takes over 5 s to send it; the gateway's crash safety and paused ingest rely on redelivery.
- `enforce_keepalive`: amqtt never disconnects a silent client, so a device that loses power without a TCP
  FIN would never have its will published.
- `LoopbackBroker`: on every connect amqtt sends a client the retained messages matching any filter any
  client has subscribed to (the gateway would be sent device status messages it never asked for).

Limitations, compared with `servers.Mosquitto`:
- No persistence across a broker restart: sessions, queued and retained messages live in the broker
  process's memory and are gone after ``restart()``, ``stop()`` or a kill. (amqtt's SessionDBPlugin needs
  aiosqlite, stores payloads as text, which breaks binary COSE readings, and never removes delivered queued
  messages.) Clients reconnect and resubscribe, but whatever the broker held at that moment is lost: use
  Mosquitto for restart drills (tests/gateway/test_gw_pipeline.py::test_broker_restart_loses_nothing).
- While a reconnecting persistent session has unacknowledged redeliveries, amqtt holds back its SUBACK and new
  deliveries until they are acknowledged or 10 s pass (the gateway acknowledges as it spools, so this is
  brief). A redelivery still unacknowledged after those 10 s is kept and sent again at the next reconnect.
- A DISCONNECT that arrives while amqtt is still setting a connection up (within milliseconds of CONNECT) is
  missed, and the client's will is published as if it had dropped.
- Deviations that no CarbonTrace component looks at: messages queued for an offline session arrive with the
  RETAIN flag set; a reconnecting persistent session gets the retained messages of its subscriptions again;
  a message goes out at the subscription's QoS rather than min(publish QoS, subscription QoS).
- Throughput: about 3k QoS 1 msg/s one publisher → one subscriber (Mosquitto: about 12k). Plenty for the
  demo's fleet; use Mosquitto for benchmarks and the drills.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from amqtt.plugins.base import BaseAuthPlugin

from carbontrace.servers import REPO_ROOT, Mosquitto, free_port, stop_process, wait_for_port

BROKER_KINDS: tuple[str, ...] = ("auto", "mosquitto", "embedded")
PATCHED_FOR = "0.12.1"  # the amqtt version whose behaviour the fixes below were checked against


class LoopbackAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Every client is let in without credentials; it is not marked anonymous, so persistent sessions work.

    Safe only because the one listener is bound to 127.0.0.1. It also gives each connection the keepalive
    grace of MQTT 3.1.1 §3.1.2.10 (1.5x the client's keepalive; amqtt's read timeout is 1x), as it runs
    after the CONNECT is read and before the connection's reader starts.
    """

    @dataclass
    class Config:
        pass

    async def authenticate(self, *, session: Any) -> bool:
        if session.keep_alive and session.keep_alive > 0:
            session.keep_alive = math.ceil(session.keep_alive * 1.5)
        return True


def broker_config(port: int) -> dict[str, Any]:
    """amqtt's configuration: one plain TCP listener on 127.0.0.1:port and the loopback auth plugin only."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 0}},
        "timeout_disconnect_delay": 0,
        "plugins": {f"{__name__}.LoopbackAuthPlugin": {}},
    }


_background: set[asyncio.Task[None]] = set()


def keep_unacknowledged_deliveries() -> None:
    """Make amqtt 0.12 keep a QoS 1 message it sent to a persistent session until that client PUBACKs it.

    As shipped, amqtt forgets an outgoing QoS 1 message as soon as the client disconnects before
    acknowledging it, or has not acknowledged it within 5 s: it is never redelivered. The gateway acknowledges
    a reading only once it is durably in its spool and leaves readings unacknowledged while its ingest is
    paused, relying on the broker to redeliver them after it reconnects (MQTT 3.1.1 §4.4), as Mosquitto does.
    With this patch the message goes back into the session's in-flight set and amqtt's own reconnect path
    (``ProtocolHandler._retry_deliveries``) resends it with DUP set. Applied in the broker process only.
    """
    from amqtt.mqtt.protocol.handler import ProtocolHandler
    from amqtt.session import OUTGOING

    original = ProtocolHandler._handle_qos1_message_flow
    if getattr(original, "_carbontrace_patched", False):
        return

    async def qos1_flow(self: Any, app_message: Any) -> None:
        try:
            await original(self, app_message)
        except BaseException:
            session = self.session
            if (app_message.direction == OUTGOING and app_message.puback_packet is None and session is not None
                    and not session.clean_session and app_message.packet_id is not None):
                session.inflight_out[app_message.packet_id] = app_message
            raise

    qos1_flow._carbontrace_patched = True  # type: ignore[attr-defined]
    ProtocolHandler._handle_qos1_message_flow = qos1_flow


def enforce_keepalive() -> None:
    """Make amqtt 0.12 drop a client that has been silent past its keepalive, and so publish its last will.

    As shipped, the broker's read timeout does nothing (``BrokerProtocolHandler.handle_read_timeout`` is
    empty): a device whose link dies without a TCP FIN or RST (power cut, Wi-Fi gone) would stay "connected"
    forever and its will would never go out. MQTT 3.1.1 §3.1.2.10 asks the server to disconnect it after 1.5x
    the keepalive; `LoopbackAuthPlugin` stretches each session's read timeout to that.
    """
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

    if getattr(BrokerProtocolHandler.handle_read_timeout, "_carbontrace_patched", False):
        return

    def read_timeout(self: Any) -> None:
        self.logger.info("keepalive expired: closing the connection as if the network had failed")
        task = asyncio.ensure_future(self.handle_connection_closed())  # the broker then publishes the will
        _background.add(task)
        task.add_done_callback(_background.discard)

    read_timeout._carbontrace_patched = True  # type: ignore[attr-defined]
    BrokerProtocolHandler.handle_read_timeout = read_timeout


async def serve(port: int) -> None:
    """Run the broker until SIGTERM or SIGINT, then shut it down cleanly."""
    from amqtt import __version__
    from amqtt.broker import Broker

    if __version__ != PATCHED_FOR:
        logging.getLogger(__name__).warning("amqtt %s: the fixes here were written for amqtt %s", __version__,
                                            PATCHED_FOR)
    keep_unacknowledged_deliveries()
    enforce_keepalive()

    class LoopbackBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
        async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                              session: Any) -> None:
            # amqtt 0.12 calls this, on every connect, for every topic filter any client holds: a client would
            # get the retained messages of other clients' subscriptions. Only its own subscriptions count.
            if any(s is session for s, _qos in self._subscriptions.get(subscription[0], ())):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    broker = LoopbackBroker(broker_config(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await broker.start()
    await stop.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(broker.shutdown(), timeout=5)


class EmbeddedBroker:
    """amqtt on a free loopback port in a child process; same interface as `carbontrace.servers.Mosquitto`."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = workdir / "embedded-broker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "carbontrace.embedded_broker", "--port", str(self.port)],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, timeout)
        except TimeoutError as err:
            self.stop(kill=True)
            raise RuntimeError(f"embedded MQTT broker did not start: {self.log_path.read_text()[-2000:]}") from err

    def stop(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, kill)

    def restart(self) -> None:
        self.stop()
        self.start()


def mosquitto_installed() -> bool:
    try:
        Mosquitto.binary()
    except RuntimeError:
        return False
    return True


def resolve_kind(kind: str = "auto") -> Literal["mosquitto", "embedded"]:
    """``auto`` is Mosquitto when its binary is installed, else the embedded broker."""
    if kind not in BROKER_KINDS:
        raise ValueError(f"unknown broker {kind!r}; one of {', '.join(BROKER_KINDS)}")
    if kind == "mosquitto":
        return "mosquitto"
    if kind == "embedded":
        return "embedded"
    return "mosquitto" if mosquitto_installed() else "embedded"


def describe(kind: Literal["mosquitto", "embedded"]) -> str:
    if kind == "mosquitto":
        return "Mosquitto"
    from amqtt import __version__

    return f"embedded amqtt {__version__}"


def _print(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - says which broker runs


def start_broker(workdir: Path, kind: str = "auto", log: Callable[[str], None] = _print) -> Mosquitto | EmbeddedBroker:
    """Start and return the MQTT broker on a free loopback port: Mosquitto when installed (or asked for), else
    the embedded amqtt broker. ``log`` is told which one runs, and why."""
    chosen = resolve_kind(kind)
    broker: Mosquitto | EmbeddedBroker
    if chosen == "mosquitto":
        broker = Mosquitto(workdir)
        broker.start()
        log(f"MQTT broker: Mosquitto ({Mosquitto.binary()}) on 127.0.0.1:{broker.port}, production configuration "
            f"(TLS only, no anonymous access, per-client passwords and ACLs: {broker.config})")
    else:
        broker = EmbeddedBroker(workdir)
        broker.start()
        why = "asked for" if kind == "embedded" else "Mosquitto is not installed"
        log(f"MQTT broker: {describe('embedded')} in its own process on 127.0.0.1:{broker.port} ({why}); "
            "WARNING: anonymous plain MQTT, for a loopback demo only, never a deployment")
    return broker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CarbonTrace's embedded MQTT broker (amqtt) on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
