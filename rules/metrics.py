"""The rule engine's operational signals: passes by outcome, pass time, cases recorded,
and how far behind the wall clock its watermark is."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.passes = Counter("citywatch_rules_passes", "Engine passes by outcome (ok, busy, "
                              "failed)", ["outcome"], registry=r)
        self.seconds = Histogram("citywatch_rules_pass_seconds", "Time of one evaluation pass",
                                 registry=r, buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.cases = Counter("citywatch_rules_cases", "Case upserts by outcome (created, "
                             "extended, revised)", ["outcome"], registry=r)
        self.last_ok = Gauge("citywatch_rules_last_success_timestamp_seconds",
                             "Unix time of the last successful pass", registry=r)
        self.lag = Gauge("citywatch_rules_watermark_lag_seconds",
                         "Wall clock minus the event time evaluated up to", registry=r)

    def pass_done(self, seconds: float, created: int, extended: int, revised: int,
                  until: datetime | None) -> None:
        self.passes.labels("ok").inc()
        self.seconds.observe(seconds)
        for outcome, n in (("created", created), ("extended", extended), ("revised", revised)):
            if n:
                self.cases.labels(outcome).inc(n)
        self.last_ok.set(time.time())
        if until is not None:
            self.lag.set(max(0.0, (datetime.now(UTC) - until).total_seconds()))

    def pass_failed(self, busy: bool = False) -> None:
        self.passes.labels("busy" if busy else "failed").inc()
