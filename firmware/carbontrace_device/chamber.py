"""A closed-chamber session on the device: collect the samples, compute and sign the flux. MicroPython-safe.

While a chamber is closed over its surface (soil collar, canopy chamber, greenhouse bay), every reading the
device makes is also a sample of the headspace: its CO2 and temperature are kept here with its sequence number.
When the closure is over, the protocol core (carbontrace_protocol/flux.py) turns the samples into one chamber
flux record, which the device signs with its own key like a reading and publishes on its own topic. The
readings themselves still go out as readings: the flux record names their sequence numbers and the digest of
the samples taken from them, so the flux traces back to signed concentration data.
"""

from carbontrace_protocol.flux import MalformedFlux, compute_flux, round_div

# Why a session gave no flux record (counted by the app; a record with a QA flag is still a record)
FAILED_NO_GEOMETRY = "no_geometry"  # no chamber volume or area configured
FAILED_TIME_NOT_SYNCED = "time_not_synced"  # samples need wall time: an unsynced clock has none
FAILED_TOO_FEW_SAMPLES = "too_few_samples"  # fewer than the core's minimum (no standard error)
FAILED_NO_TEMPERATURE = "no_temperature"  # the sensor gave no air temperature: moles of air unknown


class ChamberSession:
    def __init__(self, closed_at, duration_s, volume_ml, area_cm2, pressure_pa):
        self.closed_at = closed_at  # wall time (Unix seconds) the chamber closed
        self.duration_s = duration_s
        self.volume_ml = volume_ml
        self.area_cm2 = area_cm2
        self.pressure_pa = pressure_pa
        self.samples = []  # (seconds since closure, co2 ppm), strictly increasing in time
        self.temperatures = []  # centi-°C of the samples that had one
        self.first_seq = None
        self.last_seq = None
        self.skipped = 0  # readings of the session that are not samples (no CO2, no time, out of order)

    @property
    def opens_at(self):
        return self.closed_at + self.duration_s

    def over(self, now_s):
        return now_s is not None and now_s >= self.opens_at

    def add(self, reading):
        """Take a reading made while the chamber is closed. One stamped after the closure ended is not part of
        the session (it ends it); one without CO2 or time, or not later than the last sample, is in the session's
        sequence range but is no sample."""
        t = None if reading.timestamp is None else reading.timestamp - self.closed_at
        if t is not None and t > self.duration_s:
            return
        if self.first_seq is None:
            self.first_seq = reading.seq
        self.last_seq = reading.seq
        if t is None or reading.co2_ppm is None or t < 0 or (self.samples and t <= self.samples[-1][0]):
            self.skipped += 1
            return
        self.samples.append((t, reading.co2_ppm))
        if reading.temperature_centi_c is not None:
            self.temperatures.append(reading.temperature_centi_c)

    def flux(self, device_id, firmware):
        """The session's ``Flux``; raises ``ChamberFailed`` with a reason when no record can be made."""
        if len(self.samples) < 3:
            raise ChamberFailed(FAILED_TOO_FEW_SAMPLES)
        if not self.temperatures:
            raise ChamberFailed(FAILED_NO_TEMPERATURE)
        temp_mc = round_div(10 * sum(self.temperatures), len(self.temperatures))  # the headspace's mean
        try:
            return compute_flux(
                device_id,
                firmware,
                [self.closed_at, self.opens_at],
                [self.first_seq, self.last_seq],
                self.samples,
                self.volume_ml,
                self.area_cm2,
                temp_mc,
                self.pressure_pa,
            )
        except MalformedFlux as err:
            raise ChamberFailed("malformed_flux: %s" % err)


class ChamberFailed(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason.split(":")[0]
