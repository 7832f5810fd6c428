"""The frame envelope of docs/architecture.md: 4-byte big-endian header length N, N bytes of
UTF-8 JSON header, then the JPEG bytes.

`decode` checks only the envelope (lengths, header JSON object); what the header must
contain and whether the image is a usable JPEG is ingest/frames.py's concern.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from ingest import jsontext
from ingest.errors import Rejected

_LENGTH = struct.Struct(">I")
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    header: dict[str, Any]
    image: bytes


def encode(header: dict[str, Any], image: bytes) -> bytes:
    """Pack a header and JPEG bytes into one message payload (what devices publish)."""
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    if len(raw) > MAX_HEADER_BYTES:
        raise ValueError(f"frame header is {len(raw)} bytes, the limit is {MAX_HEADER_BYTES}")
    return _LENGTH.pack(len(raw)) + raw + image


def decode(payload: bytes) -> Envelope:
    """Split a payload into header and image; raise Rejected('bad_envelope') if malformed."""
    if len(payload) < _LENGTH.size:
        raise Rejected("bad_envelope", f"payload of {len(payload)} bytes has no header length")
    (n,) = _LENGTH.unpack_from(payload)
    if n == 0 or n > MAX_HEADER_BYTES:
        raise Rejected("bad_envelope", f"header length {n} is outside 1..{MAX_HEADER_BYTES}")
    end = _LENGTH.size + n
    if end > len(payload):
        raise Rejected("bad_envelope",
                       f"header length {n} runs past the payload of {len(payload)} bytes")
    try:
        # Strict and bounded (ingest/jsontext.py); the header is stored as JSONB.
        header = jsontext.loads(payload[_LENGTH.size:end], reason="bad_envelope", jsonb=True)
    except Rejected as exc:
        if exc.reason != "bad_envelope":
            raise
        raise Rejected("bad_envelope", f"header is not UTF-8 JSON: {exc.detail}") from None
    if not isinstance(header, dict):
        raise Rejected("bad_envelope", f"header must be a JSON object, got {type(header).__name__}")
    return Envelope(header, bytes(payload[end:]))
