"""Ports: the device's only contact with hardware and the network.

``ports.board`` runs on MicroPython boards (ESP32, Pico W); ``ports.host`` runs in CPython for tests and
the fleet simulator. Both expose the interface documented in ``ports.host``.
"""
