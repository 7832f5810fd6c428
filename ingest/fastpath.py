"""The fast path of sensor readings: one typed, validating parse (msgspec) for the payload
that is exactly what a sensor kind declares, and nothing else.

A payload is decoded here into a struct generated from the kind's declaration
(domain/sensors.py): every declared field with its JSON type, numbers at least 0 and at
most the plausible ceiling, required fields required, no other field. A payload that
passes is, by construction, one the full decoder (ingest/decode.py `decode_reading`)
accepts with the same values; anything else (a missing or extra field, a wrong type, a
value out of range, malformed JSON) returns None and goes the full decoder's way, which
says why with its reason code. tests/ingest/test_fastpath.py holds the two paths to the
same verdict over a fuzzed stream.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from domain.sensors import SensorKind

_TYPES = {"number": float, "boolean": bool}


# by the kind's name: hashing the declaration itself (a frozen dataclass of fields) would
# cost more than the whole parse
_DECODERS: dict[str, tuple[SensorKind, dict[str, float], msgspec.json.Decoder,
                           tuple[str, ...]]] = {}


def _decoder(kind: SensorKind, limits: dict[str, float]
             ) -> tuple[msgspec.json.Decoder, tuple[str, ...]]:
    """The kind's decoder for these ceilings, made once (again only if they change)."""
    cached = _DECODERS.get(kind.kind.value)
    if cached is not None and cached[0] is kind and cached[1] == limits:
        return cached[2], cached[3]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [("ts", int | str)]
    for f in kind.fields:
        t: Any = _TYPES[f.type]
        if f.type == "number":
            high = limits.get(f.name, f.max)
            t = Annotated[float, msgspec.Meta(ge=0) if high is None else
                          msgspec.Meta(ge=0, le=high)]
        fields.append((f.name, t) if f.required else (f.name, t | None, None))
    struct = msgspec.defstruct(f"{kind.kind}_reading", fields, forbid_unknown_fields=True)
    decoder, names = msgspec.json.Decoder(struct), tuple(f.name for f in kind.fields)
    _DECODERS[kind.kind.value] = (kind, dict(limits), decoder, names)
    return decoder, names


def decode(kind: SensorKind, payload: bytes, ceilings: dict[str, float]
           ) -> tuple[int | str, dict[str, float | bool]] | None:
    """(ts as sent, the non-null field values) of a payload that is exactly the kind's
    declared reading within its limits; None for anything else."""
    decoder, names = _decoder(kind, ceilings)
    try:
        obj = decoder.decode(payload)
    except (msgspec.MsgspecError, ValueError):  # ValueError: invalid UTF-8, among others
        return None
    values = {}
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            values[name] = value
    return obj.ts, values
