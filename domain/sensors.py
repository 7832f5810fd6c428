"""One declaration per sensor kind: everything else about readings comes from here.

A sensor kind names its device kind (which is also its topic segment,
`<prefix>/<kind>/<device_id>`) and its fields: JSON key and stored column, type, whether
a message must carry it, its unit, the largest plausible value, and which aggregates the
rule engine's event-time windows keep of it. From these the collector decodes and
validates a payload (ingest/decode.py), storage knows the reading columns and builds the
window views, plain and TimescaleDB (storage/windows.py), and rules know which fields and
device kinds they may name (rules/kinds). Adding a sensor kind is a declaration here, a
migration that adds its device kind (and any new column), and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from domain.vocabulary import DeviceKind

FieldType = Literal["number", "boolean"]
# Window aggregates a field may declare. `leq` is the equivalent continuous sound level,
# the energy mean 10·log10(mean(10^(L/10))) that noise limits are stated in (GB 12523-2011).
Aggregate = Literal["mean", "max", "min", "leq"]
AGGREGATES: tuple[Aggregate, ...] = ("mean", "max", "min", "leq")

# Window widths kept as views (continuous aggregates under TimescaleDB); a rule asking for
# another width is computed from the readings directly.
WINDOW_VIEWS: dict[str, timedelta] = {
    "readings_10min": timedelta(minutes=10),
    "readings_15min": timedelta(minutes=15),
    "readings_hourly": timedelta(hours=1),
}


@dataclass(frozen=True, slots=True)
class SensorField:
    """One field of a reading: the JSON key of the payload and the stored column."""

    name: str
    type: FieldType
    title: str
    unit: str = ""
    required: bool = True
    max: float | None = None  # largest plausible value (numbers; below 0 is always refused)
    windows: tuple[Aggregate, ...] = ()  # aggregates the window views keep

    def window_column(self, aggregate: Aggregate) -> str:
        return f"{self.name}_{aggregate}"


@dataclass(frozen=True, slots=True)
class SensorKind:
    """A kind of monitoring device that publishes readings."""

    kind: DeviceKind
    title: str
    fields: tuple[SensorField, ...]

    def field(self, name: str) -> SensorField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.kind} readings have no field {name!r}; "
                       f"they have {[f.name for f in self.fields]}")


FUME = SensorKind(DeviceKind.FUME, "Kitchen oil-fume monitor (GB 18483-2001)", (
    SensorField("fume_mg_m3", "number", "Oil-fume concentration", "mg/m³", max=200.0,
                windows=("mean", "max")),
    SensorField("fan_on", "boolean", "Exhaust fan running"),
    SensorField("purifier_on", "boolean", "Fume purifier running"),
))

DUST = SensorKind(DeviceKind.DUST, "Construction-site dust monitor (HJ 653-2021)", (
    SensorField("pm10_ug_m3", "number", "PM10", "µg/m³", max=20000.0, windows=("mean",)),
    SensorField("pm25_ug_m3", "number", "PM2.5", "µg/m³", max=20000.0, windows=("mean",)),
    SensorField("tsp_ug_m3", "number", "Total suspended particulates", "µg/m³",
                required=False, max=20000.0),
    SensorField("noise_dba", "number", "Sound level", "dB(A)", required=False, max=200.0),
    SensorField("wind_ms", "number", "Wind speed", "m/s", required=False, max=100.0),
))

NOISE = SensorKind(DeviceKind.NOISE, "Site-boundary noise monitor (GB 12523-2011)", (
    SensorField("noise_dba", "number", "Sound level", "dB(A)", max=200.0,
                windows=("leq", "max")),
))

SENSOR_KINDS: dict[str, SensorKind] = {k.kind.value: k for k in (FUME, DUST, NOISE)}


def _reading_fields() -> dict[str, SensorField]:
    """Every field of every kind by name; a name shared by kinds is one column, so the
    kinds must agree on its type (checked once, at import)."""
    out: dict[str, SensorField] = {}
    for kind in SENSOR_KINDS.values():
        for f in kind.fields:
            seen = out.get(f.name)
            if seen is not None and seen.type != f.type:
                raise TypeError(f"reading field {f.name!r} is {seen.type} in one sensor kind "
                                f"and {f.type} in {kind.kind}")
            out.setdefault(f.name, f)
    return out


READING_FIELDS: dict[str, SensorField] = _reading_fields()
READING_COLUMNS: tuple[str, ...] = ("device_id", "ts", "received_at", *READING_FIELDS)


def window_columns() -> dict[tuple[str, Aggregate], str]:
    """(field, aggregate) -> column of the window views, over every kind's declarations."""
    out: dict[tuple[str, Aggregate], str] = {}
    for kind in SENSOR_KINDS.values():
        for f in kind.fields:
            for agg in f.windows:
                out[(f.name, agg)] = f.window_column(agg)
    return out
