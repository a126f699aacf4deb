"""Grid emission factors as data (region, year, value, source), never constants in code.

Values are exact decimals with four places, held as integers of 1e-4 kgCO2/kWh, so that
emissions = energy × factor is exact: Wh × (1e-4 kg/kWh) = 1e-4 g.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path

FACTOR_EXPONENT = -4


@dataclass(frozen=True)
class EmissionFactor:
    id: str
    region: str
    year: int
    kg_per_kwh_e4: int  # kgCO2 per kWh in units of 1e-4
    valid_from: str
    source: str

    @property
    def kg_per_kwh(self) -> Decimal:
        return Decimal(self.kg_per_kwh_e4).scaleb(FACTOR_EXPONENT)


def _parse(entry: dict[str, object]) -> EmissionFactor:
    value = Decimal(str(entry["kg_per_kwh"]))
    scaled = value.scaleb(-FACTOR_EXPONENT)
    if scaled != scaled.to_integral_value() or value < 0:
        raise ValueError(f"emission factor {entry['id']}: {value} needs more than 4 decimal places or is negative")
    return EmissionFactor(
        id=str(entry["id"]),
        region=str(entry["region"]),
        year=int(str(entry["year"])),
        kg_per_kwh_e4=int(scaled),
        valid_from=str(entry["valid_from"]),
        source=str(entry["source"]),
    )


@lru_cache(maxsize=8)
def load_table(path: str | None = None) -> tuple[dict[str, EmissionFactor], str]:
    """The factor table (id → factor) and the default id; ``path`` overrides the bundled table."""
    if path is None:
        text = resources.files("carbontrace_protocol").joinpath("data/emission_factors.json").read_text()
    else:
        text = Path(path).read_text()
    raw = json.loads(text)
    table = {f.id: f for f in (_parse(entry) for entry in raw["factors"])}
    default = str(raw["default"])
    if default not in table:
        raise ValueError(f"default emission factor {default!r} is not in the table")
    return table, default


def get_factor(factor_id: str | None = None, path: str | None = None) -> EmissionFactor:
    table, default = load_table(path)
    key = factor_id or default
    if key not in table:
        raise KeyError(f"unknown emission factor {key!r}; known: {', '.join(sorted(table))}")
    return table[key]
