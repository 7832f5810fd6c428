"""Strict, bounded JSON for untrusted payloads: one parser for sensor payloads and frame
headers.

orjson parses (strict UTF-8: invalid bytes and lone surrogates, raw or escaped, are
refused), then the document is checked without recursion: nesting deeper than
`MAX_DEPTH` is refused, so no later step (logging, JSONB, repr) can recurse into it.
A payload orjson refuses is parsed again by the standard library only to say precisely
why (so a number too large for a double is reported by the field that holds it, as
`not_finite` or `out_of_range`, and a 5,000-digit integer as `not_json`), and the result
of that second parse is used only when the sole complaint was a number beyond the range
of a double.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from ingest.errors import Rejected

MAX_DEPTH = 32


def _reject_constant(name: str) -> float:
    raise Rejected("not_finite", f"JSON constant {name} is not a number")


_STDLIB = json.JSONDecoder(parse_constant=_reject_constant)


def _classify(raw: bytes, why: str, reason: str) -> Any:
    """Parse again with the standard library to say why orjson refused `raw`."""
    try:
        doc = _STDLIB.decode(raw.decode("utf-8"))
    except RecursionError:
        raise Rejected(reason, f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise Rejected(reason, str(exc)[:200]) from None
    if "infinity" not in why:
        raise Rejected(reason, f"not strict UTF-8 JSON: {why[:200]}")
    return doc


def _check(doc: Any, reason: str, jsonb: bool, unicode: bool) -> None:
    """Depth bound; with `unicode` no lone surrogates (orjson's output has none); for JSONB
    also no NUL and only finite numbers."""
    strings = jsonb or unicode
    if type(doc) is dict and not strings:
        # Sensor payloads are flat objects: nothing to walk unless a value is a container.
        if not any(type(v) in (dict, list) for v in doc.values()):
            return
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            items = node.items()
        elif type(node) is list:
            items = ((None, v) for v in node)
        else:
            continue
        if depth > MAX_DEPTH:
            raise Rejected(reason, f"nested deeper than {MAX_DEPTH} levels")
        for key, value in items:
            for s in (key, value):
                if strings and type(s) is str:
                    if jsonb and "\x00" in s:
                        raise Rejected(reason, "a string holds NUL (U+0000)")
                    if unicode:
                        try:
                            s.encode("utf-8")
                        except UnicodeEncodeError:
                            raise Rejected(reason, "a string holds a lone surrogate") from None
            if type(value) in (dict, list):
                stack.append((value, depth + 1))
            elif jsonb and type(value) is float and not math.isfinite(value):
                raise Rejected("not_finite", f"{key!r} is {value}")


def loads(raw: bytes, *, reason: str = "not_json", jsonb: bool = False) -> Any:
    """Parse untrusted JSON; raise Rejected(`reason`) (or `not_finite`) if it is not
    strict, bounded JSON. `jsonb`: the document will be stored as PostgreSQL JSONB, which
    refuses NUL characters and non-finite numbers."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        doc = _classify(bytes(raw), str(exc), reason)
        _check(doc, reason, jsonb, unicode=True)
        return doc
    _check(doc, reason, jsonb, unicode=False)
    return doc
