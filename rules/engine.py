"""The rule engine: evaluate the rule set over an event-time range and record cases.

Evaluation is a pure function of the stored data: every rule turns the readings and
detections of the range into episodes, and each episode is upserted as the case
(rule, subject, episode start). Running it twice, or live and then in one batch, gives
the same cases. The range is widened to whole local days and back to the start of any
case still running, so an episode is always seen from its beginning. One engine runs at a
time (a PostgreSQL advisory lock); `run_engine` repeats the evaluation from the last
watermark minus the allowed lateness, so late data is judged by when it happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from rules.config import RulesConfig
from rules.credit import refresh as refresh_credit
from rules.evidence import attach_evidence
from rules.metrics import EngineMetrics
from rules.model import Episode, EvalContext, RuleBase
from rules.ruleset import RuleSet, load
from rules.timeutil import day_start, local_day, parse_duration
from storage import cases as case_store
from storage import registry as registry_store
from storage import rule_queries, timescale
from storage import sorties as sortie_store
from storage.db import Database
from storage.errors import StorageError

log = logging.getLogger(__name__)

ENGINE_LOCK = 0x72756C65  # "rule"
ENGINE_NAME = "rules"
ACTOR = "rule-engine"


class EngineBusy(StorageError):
    """Another rule engine holds the lock; only one may evaluate at a time."""


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """What one evaluation did."""

    start: datetime | None  # the range actually read (event time)
    until: datetime | None
    episodes: int = 0
    created: int = 0
    extended: int = 0
    revised: int = 0
    unchanged: int = 0
    fused: int = 0
    suppressed: int = 0  # sensor episodes of devices not certified at the time
    by_rule: dict[str, int] = field(default_factory=dict)
    case_ids: tuple[int, ...] = ()
    evaluate_s: float = 0.0
    record_s: float = 0.0
    rule_s: dict[str, float] = field(default_factory=dict)  # evaluation time per rule

    def as_dict(self) -> dict:
        return {"start": self.start, "until": self.until, "episodes": self.episodes,
                "created": self.created, "extended": self.extended, "revised": self.revised,
                "unchanged": self.unchanged, "fused": self.fused, "suppressed": self.suppressed, "by_rule": self.by_rule,
                "evaluate_s": round(self.evaluate_s, 3), "record_s": round(self.record_s, 3)}


def load_rules(config: RulesConfig, classes: Sequence[str] | None = None) -> RuleSet:
    """The configured rule set, checked and compiled (RuleSetError names file and path).

    `classes`: the class names of the detection model in use (its own metadata), when one
    is loaded; a rule naming another class is then an error (it could never match)."""
    return load(Path(config.directory), config.profile,
                None if classes is None else list(classes))


def evaluate(config: RulesConfig, db: Database, *, since: datetime | None = None,
             until: datetime | None = None, ruleset: RuleSet | None = None,
             actor: str = ACTOR, live: bool = False) -> EvaluationResult:
    """Evaluate every enabled rule over [since, until) of event time and record the cases.

    `since` None: from the first stored reading or frame; `until` None: just after the last
    one (event time, not the wall clock, so a batch over old data judges it as it was).
    `live`: more data may still come (the engine loop), so a window is judged only once the
    data has passed its end; a batch judges the last, partly filled windows as they are.
    Raises EngineBusy when another engine is evaluating.
    """
    rs = ruleset or load_rules(config)
    tz = ZoneInfo(config.timezone)
    with db.connection() as conn:
        conn.commit()
        if not rule_queries.try_advisory_lock(conn, ENGINE_LOCK):
            conn.rollback()
            raise EngineBusy("another rule engine is evaluating (advisory lock held)")
        try:
            rule_queries.set_work_mem(conn, config.work_mem)
            return _evaluate_locked(conn, config, rs, tz, since, until, actor, live)
        finally:
            conn.rollback()
            rule_queries.set_work_mem(conn, None)
            rule_queries.advisory_unlock(conn, ENGINE_LOCK)
            conn.commit()


def _evaluate_locked(conn: psycopg.Connection, config: RulesConfig, rs: RuleSet, tz: ZoneInfo,
                     since: datetime | None, until: datetime | None,
                     actor: str, live: bool) -> EvaluationResult:
    first, last = rule_queries.data_span(conn)
    if first is None:
        return EvaluationResult(None, None)
    if until is None:
        until = last + timedelta(microseconds=1)
    since = since or first
    start = day_start(local_day(since, tz), tz)
    running = case_store.open_episode_starts(conn, start)
    if running:
        start = min(start, day_start(local_day(min(running), tz), tz))
    t0 = time.monotonic()
    # TimescaleDB: windows are read from continuous aggregates, exact once refreshed
    timescale.refresh_aggregates(conn, start, until)
    ctx = EvalContext(conn, start, until, tz, rs.profile,
                      {s.subject_id: s for s in registry_store.subjects(conn)},
                      {d.device_id: d for d in registry_store.devices(conn)}, live=live)
    emitted: list[tuple[RuleBase, Episode]] = []
    by_rule: dict[str, int] = {}
    suppressed = 0
    rule_s: dict[str, float] = {}
    for rule, evaluator in zip(rs.rules, rs.evaluators, strict=True):
        t_rule = time.monotonic()
        episodes = evaluator.evaluate(ctx)
        rule_s[rule.id] = round(time.monotonic() - t_rule, 3)
        ctx.episodes[rule.id] = episodes
        by_rule[rule.id] = len(episodes)
        if rule.emit:
            kept = [e for e in episodes if not _suppressed(config, ctx, rule, e)]
            suppressed += len(episodes) - len(kept)
            emitted += [(rule, e) for e in kept]
    conn.commit()
    t1 = time.monotonic()
    outcomes, case_ids, fused = _record(conn, config, ctx, emitted, actor)
    return EvaluationResult(start, until, len(emitted), outcomes["created"], outcomes["extended"],
                            outcomes["revised"], outcomes["unchanged"], fused, suppressed,
                            by_rule, tuple(case_ids), t1 - t0, time.monotonic() - t1, rule_s)


def _suppressed(config: RulesConfig, ctx: EvalContext, rule: RuleBase, ep: Episode) -> bool:
    """A sensor episode whose own device was not certified / calibrated at the time."""
    if not config.suppress_uncertified or rule.judges != "measurements":
        return False
    days = {local_day(ep.start, ctx.tz), local_day(ep.end, ctx.tz)}
    return any(d not in ctx.devices or ctx.devices[d].valid_at(day)
               for d in ep.devices for day in days)


def _record(conn: psycopg.Connection, config: RulesConfig, ctx: EvalContext,
            emitted: Sequence[tuple[RuleBase, Episode]], actor: str):
    margin = parse_duration(config.fusion_margin)
    outcomes = dict.fromkeys(("created", "extended", "revised", "unchanged"), 0)
    case_of: dict[tuple, int] = {}
    ordered = sorted(emitted, key=lambda re: re[1].key)
    for rule, ep in ordered:
        draft = case_store.CaseDraft(
            rule.id, rule.version, ep.subject_id, ep.start, ep.end, rule.case_kind,
            rule.severity, rule.title, rule.legal_basis, ep.summary)
        case_id, outcome = case_store.upsert_case(conn, draft, actor)
        outcomes[outcome] += 1
        case_of[ep.key] = case_id
        conn.commit()
        if outcome == "created" and rule.dispatch is not None:
            sortie_store.request_for_case(conn, case_id, rule.id, ep.subject_id,
                                          rule.dispatch.model_dump(exclude_none=True), actor)
    # Fusion: camera / drone cases, and warnings, at a subject with a sensor violation in
    # the same period join that case (the earliest, when several overlap).
    hosts = sorted(((r, e) for r, e in ordered
                    if r.judges == "measurements" and r.case_kind == "violation"),
                   key=lambda re: (re[1].start, re[0].id))
    into: dict[tuple, tuple[RuleBase, Episode]] = {}
    for rule, ep in ordered:
        if rule.judges != "frames" and rule.case_kind != "warning":
            continue
        host = next(((r, s) for r, s in hosts if s.subject_id == ep.subject_id
                     and s.start - margin <= ep.end and ep.start <= s.end + margin), None)
        if host:
            into[ep.key] = host
    fused = 0
    for _rule, ep in ordered:
        host = into.get(ep.key)
        fused += bool(host)
        case_store.set_fused_into(conn, case_of[ep.key], case_of[host[1].key] if host else None,
                                  actor)
        conn.commit()
    guests: dict[tuple, list[tuple[RuleBase, Episode]]] = {}
    for key, host in into.items():
        guests.setdefault(host[1].key, []).append(
            next((r, e) for r, e in ordered if e.key == key))
    for rule, ep in ordered:
        attach_evidence(conn, config, ctx, case_of[ep.key], rule, ep,
                        guests.get(ep.key, []), margin, actor)
        conn.commit()
    return outcomes, sorted(set(case_of.values())), fused


def run_engine(config: RulesConfig, db: Database, stop: threading.Event,
               metrics: EngineMetrics | None = None, *,
               classes: Sequence[str] | None = None) -> None:
    """Evaluate every `rules.interval_s` until `stop` is set (the engine of `citywatch run`).

    Each pass re-reads from the last watermark minus the allowed lateness, so data that
    arrives late is judged by its event time; credit codes are refreshed after each pass.
    Errors are logged and retried at the next interval: the engine never dies of one.
    `classes`: the detection model's class names, where this process runs the model.
    """
    lateness = parse_duration(config.allowed_lateness)
    ruleset = load_rules(config, classes)
    metrics = metrics if metrics is not None else EngineMetrics()
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            with db.connection() as conn:
                watermark = case_store.engine_watermark(conn, ENGINE_NAME)
            result = evaluate(config, db, since=watermark - lateness if watermark else None,
                              ruleset=ruleset, live=True)
            with db.connection() as conn:
                if result.until is not None:
                    case_store.set_engine_watermark(conn, ENGINE_NAME, result.until)
                refresh_credit(conn, config.credit, actor=ACTOR)
                conn.commit()
            metrics.pass_done(time.monotonic() - t0, result.created, result.extended,
                              result.revised, result.until)
            if result.created or result.extended or result.revised:
                log.info("rules: %d episodes, %d new cases, %d extended, %d revised in %.2fs",
                         result.episodes, result.created, result.extended, result.revised,
                         time.monotonic() - t0)
        except EngineBusy as exc:
            metrics.pass_failed(busy=True)
            log.info("rules: %s; waiting", exc)
        except Exception:
            metrics.pass_failed()
            log.exception("rules: evaluation failed; retrying in %.0fs", config.interval_s)
        stop.wait(max(0.0, config.interval_s - (time.monotonic() - t0)))
