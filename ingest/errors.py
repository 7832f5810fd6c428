"""Why a message was refused: the reason codes of dead_letters, documented in one place.

A reason code is a stable string: dashboards, scenario files and tests match on it, so a
code is never renamed once shipped. `Rejected` carries a code and a human detail; it is the
one way a decoder says "this message cannot be stored".
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # payload shape
    "not_json": "the payload is not strict UTF-8 JSON (no lone surrogates; nesting at most "
                "32 levels; integers of at most 4,300 digits)",
    "not_object": "the JSON payload is not an object",
    "missing_field": "a required field is absent or null",
    "bad_type": "a field has the wrong JSON type (e.g. a string where a number belongs)",
    "not_finite": "a number is NaN or infinite",
    "negative": "a quantity that cannot be negative is negative",
    "out_of_range": "a value lies outside its plausible range (configured limits)",
    "bad_timestamp": "ts is neither RFC 3339 with an offset nor integer epoch milliseconds",
    "future_timestamp": "ts lies further in the future than ingest.max_future_s",
    "too_old": "ts is older than the retention window (ingest.retention_days)",
    "payload_too_large": "the payload exceeds the configured size limit",
    # addressing
    "unknown_topic": "the topic is not one of the contract's topics under the prefix",
    "unknown_device": "the device is not in the registry (devices table)",
    "wrong_device_kind": "the device exists but is not of the kind the topic implies",
    # identity
    "conflicting_duplicate": "a reading with the same device and ts is stored with other values",
    # routing and storage
    "unsupported": "the message kind has no handler in this version",
    "storage_rejected": "the database refused the row (kept here with the database's error)",
    "internal_error": "handling this message raised an unforeseen error (a defect: the "
                      "message is kept so it can be replayed once fixed)",
    # frame envelopes (see ingest/envelope.py and ingest/frames.py)
    "bad_envelope": "the frame envelope is malformed (header length, header JSON)",
    "missing_pose": "a drone frame header lacks its pose fields",
    "not_jpeg": "the frame's image bytes are not a decodable JPEG",
    "image_too_large": "the frame image exceeds the configured byte limit",
    "too_many_pixels": "the frame image exceeds the configured pixel limit",
    "bad_dimensions": "the frame image is narrower than ingest.min_frame_side_px or more "
                      "elongated than ingest.max_frame_aspect (read from the JPEG header)",
    "evidence_unwritable": "the evidence store could not write the frame's image (disk full, "
                           "directory unwritable); the message is kept here whole",
}


class IngestError(Exception):
    """The collector cannot go on (configuration, broker refused us), not a bad message."""


class Rejected(Exception):
    """A message cannot be stored; `reason` is a code of REASONS, `detail` says what came."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}; add it to ingest.errors.REASONS")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)
