"""CarbonTrace device firmware (MicroPython): drivers, MQTT client, outbox, application."""
