"""Ports: the device's only contact with hardware and the network.

``ports.board`` runs on MicroPython boards (ESP32, Pico W); ``simulators.host_port`` runs in CPython for
tests and the fleet simulator (host-only code, never built into the firmware). Both expose the interface
documented in ``simulators/host_port.py``.
"""
