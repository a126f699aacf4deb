"""A site's emission factor, by the catalogue rule (carbontrace_protocol/factor_rule.py), never by hand.

The site's declared location (country, province, grid region) and the activity's year decide; the cloud
uses this for the gateway's configuration, for checking every aggregate it accepts and for the console.
"""

from __future__ import annotations

import datetime
import time

from carbontrace_protocol.emission_factors import EmissionFactor, load_catalogue
from carbontrace_protocol.factor_rule import SiteLocation, activity_year, select_factor
from cloud import models


def location_of(site: models.Site) -> SiteLocation:
    return SiteLocation(site.country, site.province, site.grid_region)


def today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def factor_for(site: models.Site, window_start: int, on: datetime.date | None = None) -> EmissionFactor:
    """The factor the rule gives ``site`` for a window starting at ``window_start``, decided ``on`` (today)."""
    return select_factor(load_catalogue(), location_of(site), activity_year(window_start), on or today())


def current_factor(site: models.Site) -> EmissionFactor:
    """The factor for energy used now: what the site's gateways are configured with."""
    return factor_for(site, int(time.time()))
