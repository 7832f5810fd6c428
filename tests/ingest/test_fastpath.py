"""The fast path of readings (ingest/fastpath.py) never changes a verdict: over a fuzzed
stream of fume and dust payloads (valid, changed, byte-flipped, truncated, poisoned
fields), decoding with it and without it gives the same record or the same reason code."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from citywatch import config as config_mod
from domain.sensors import SENSOR_KINDS
from ingest import fastpath
from ingest.decode import Address, Message, decode_reading
from ingest.errors import Rejected
from tests.ingest.test_fuzz import Generator


def verdict(kind, msg, cfg, fast):
    try:
        r = decode_reading(kind, msg, cfg, fast=fast)
    except Rejected as e:
        return ("rejected", e.reason)
    return ("stored", r.device_id, r.ts, r.received_at, dict(r.values))


@pytest.mark.parametrize("ceilings", [{}, {"fume_mg_m3": 2.5, "pm10_ug_m3": 150.0}])
def test_fast_and_full_decoding_agree(ceilings):
    cfg = config_mod.load(env={}).ingest.model_copy(update={"plausible_max": ceilings})
    gen = Generator(4242)
    now = datetime.now(UTC)
    fast_taken = compared = 0
    for _ in range(6000):
        topic, payload = gen.message()
        kind_name, _, device = topic.partition("/")
        kind = SENSOR_KINDS.get(kind_name)
        if kind is None or "/" in device:
            continue
        msg = Message(f"p/{topic}", payload, now, Address(kind_name, device))
        assert verdict(kind, msg, cfg, True) == verdict(kind, msg, cfg, False), payload
        compared += 1
        fast_taken += fastpath.decode(kind, payload, cfg.plausible_max) is not None
    # both paths were exercised: most valid readings fast, every bad one the full way
    assert compared > 3000 and 0.2 * compared < fast_taken < 0.8 * compared
