"""Sorties as the operator and the rules see them: check, record, fly, bring home, and
turn a sortie's frames into evidence of the case that sent it.

- `fly` checks a plan (refused with every constraint named, nothing uploaded), records
  the sortie, flies it with flights/dispatch.py and keeps the record current: status
  with its reason, the flown track, the vehicle's takeoff and landing times, an abort
  asked for from another process (`citywatch flights abort`);
- `plan_request` / `Dispatcher`: a rule's `dispatch` action leaves a `requested` sortie
  for a case; the dispatcher plans a point inspection of the case's subject for the
  nearest available drone, checks it, and flies it at once or after an operator's
  approval (`approval: operator`);
- `attach_frames`: the fit frames a sortie took (by its mission id, between takeoff and
  landing) join the sortie's case as evidence, beside the sensor series.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from domain.registry import Registry
from domain.registry import load as load_registry
from flights import planner
from flights.config import FlightsConfig
from flights.planner import Plan, PlanError
from storage import cases as case_store
from storage import sorties as store
from storage.db import Database
from storage.errors import StorageError

log = logging.getLogger(__name__)

DISPATCH_LOCK = 0x666C7473  # "flts": one dispatcher at a time


@dataclass(frozen=True, slots=True)
class Context:
    """What flying needs besides the plan: settings, registry, no-fly zones."""

    cfg: FlightsConfig
    registry: Registry
    zones: tuple[dict, ...]

    @classmethod
    def load(cls, cfg: FlightsConfig, registry_dir: Path, registry: Registry | None = None) -> Context:
        """The registry (unless given) and no-fly zones of `registry_dir`."""
        registry = registry or load_registry(registry_dir)
        return cls(cfg, registry, tuple(planner.load_no_fly(Path(registry_dir) / cfg.nofly_file)))


def check(ctx: Context, plan: Plan, when: datetime | None = None) -> planner.Check:
    device = planner.drone(ctx.registry, plan.device_id) if plan.device_id else None
    return planner.check(plan, ctx.cfg, zones=ctx.zones, device=device,
                         when=when or datetime.now(UTC))


def record(db: Database, plan: Plan, actor: str, **kw) -> int:
    with db.connection() as conn:
        return store.create(conn, kind=plan.kind, plan=plan.to_json(), device_id=plan.device_id,
                            subject_ids=plan.subject_ids, requested_by=actor,
                            mission_id=plan.mission_id(), **kw)


def fly(db: Database, ctx: Context, plan: Plan, actor: str, *, sortie_id: int | None = None,
        when: datetime | None = None) -> store.Sortie:
    """Check, record and fly a plan; return the sortie as it ended (landed, aborted, failed, refused)."""
    if not plan.device_id:
        raise PlanError("the plan names no drone (plan it with --drone, or give --drone to fly)")
    result = check(ctx, plan, when)
    if sortie_id is None:
        sortie_id = record(db, plan, actor)
    if not result.ok:
        with db.connection() as conn:
            store.set_status(conn, sortie_id, "refused",
                             "; ".join(p.message for p in result.problems), actor)
            return store.get(conn, sortie_id, events=True)
    device = planner.drone(ctx.registry, plan.device_id)
    connection = device.props.get("connection")
    if not connection:
        with db.connection() as conn:
            store.set_status(conn, sortie_id, "failed",
                             f"{plan.device_id}: the registry gives no connection string", actor)
            return store.get(conn, sortie_id, events=True)
    flushed = 0

    def on_status(status: str, reason: str, fields: dict) -> None:
        with db.connection() as conn:
            store.set_status(conn, sortie_id, status, reason, actor, **fields)

    def poll(flight) -> str | None:
        nonlocal flushed
        points = flight.track_since(flushed)
        with db.connection() as conn:
            store.append_track(conn, sortie_id, points)
            flushed += len(points)
            return store.abort_requested(conn, sortie_id)

    from flights.dispatch import Flight  # dronekit is loaded only when a drone flies

    Flight(plan, connection, ctx.cfg, on_status=on_status, poll=poll,
           endurance_min=device.props.get("endurance_min")).run()
    with db.connection() as conn:
        sortie = store.get(conn, sortie_id, events=True)
        if sortie.case_id is not None:
            attach_frames(conn, sortie, actor)
    return sortie


def attach_frames(conn, sortie: store.Sortie, actor: str) -> int:
    """Join the sortie's frames to its case as evidence; returns how many were new."""
    if sortie.case_id is None or not sortie.mission_id or sortie.takeoff_at is None:
        return 0
    until = sortie.landed_at or datetime.now(UTC)
    added = 0
    with conn.transaction():
        for f in store.frames_of(conn, sortie.device_id, sortie.mission_id, sortie.takeoff_at, until):
            added += case_store.add_evidence(conn, sortie.case_id, "frame", f.sha256, f.sha256, None, {
                "ts": f.ts.astimezone(UTC).isoformat(), "source_id": sortie.device_id,
                "fit_as_evidence": f.fit_as_evidence, "sortie_id": sortie.sortie_id,
                "mission_id": sortie.mission_id, "lat": f.lat, "lon": f.lon, "alt_m": f.alt_m},
                actor)
    return added


def plan_request(ctx: Context, registry_subject: str, request: dict,
                 busy: set[str]) -> Plan:
    """A point inspection of a case's subject by the nearest drone that is not flying."""
    subject = planner.registry_subject(ctx.registry, registry_subject)
    from shapely.geometry import shape

    c = shape(subject.geometry).centroid
    drone = planner.nearest_drone(ctx.registry, c.y, c.x, area_id=subject.area_id, exclude=busy)
    if drone is None:
        raise PlanError(f"no drone available for {registry_subject} (all {len(busy)} are flying)")
    return planner.inspection(subject.geometry, planner.dock(drone), ctx.cfg,
                              alt_m=request.get("alt_m"), pattern=request.get("pattern"),
                              device_id=drone.device_id, subject_ids=(registry_subject,))


class Dispatcher:
    """Plans and flies the sorties that rules request; one per database (advisory lock)."""

    actor = "flights-dispatcher"

    def __init__(self, db: Database, ctx: Context, *, interval_s: float = 1.0,
                 attach_for_s: float = 900.0):
        self.db = db
        self.ctx = ctx
        self.interval_s = interval_s
        self.attach_for_s = attach_for_s
        self.flying: dict[int, threading.Thread] = {}
        self.errors: list[BaseException] = []

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop`; a failure of a flight thread stops the loop with its error."""
        with self.db.connection() as lock_conn:
            while not lock_conn.execute("SELECT pg_try_advisory_lock(%s)",
                                        (DISPATCH_LOCK,)).fetchone()[0]:
                if stop.wait(self.interval_s):
                    return
            lock_conn.commit()
            try:
                while not stop.is_set():
                    try:
                        self.step()
                    except (psycopg.OperationalError, StorageError):
                        log.exception("flights: dispatcher pass failed; retrying")
                    if self.errors:
                        raise RuntimeError("a sortie thread failed") from self.errors[0]
                    stop.wait(self.interval_s)
            finally:
                for t in self.flying.values():
                    t.join(timeout=1.0)
                lock_conn.execute("SELECT pg_advisory_unlock(%s)", (DISPATCH_LOCK,))

    def step(self) -> None:
        """One pass: plan what was requested, fly what may fly, attach late frames."""
        self.flying = {k: t for k, t in self.flying.items() if t.is_alive()}
        with self.db.connection() as conn:
            with conn.transaction():
                ready = store.claim_ready(conn)
                busy = store.busy_drones(conn)
            for s in ready:
                if s.sortie_id in self.flying:
                    continue
                if s.status == "requested":
                    self._plan(conn, s, busy)
                elif s.status == "planned":
                    self._launch(s)
            recent = store.list_sorties(conn, status=["landed", "aborted"], limit=50)
            for s in recent:
                if s.case_id and (datetime.now(UTC) - s.updated_at).total_seconds() < self.attach_for_s:
                    attach_frames(conn, s, self.actor)

    def _plan(self, conn, s: store.Sortie, busy: set[str]) -> None:
        try:
            plan = plan_request(self.ctx, s.subject_ids[0], s.plan or {}, busy)
        except PlanError as exc:
            store.set_status(conn, s.sortie_id, "refused", str(exc), self.actor)
            return
        result = check(self.ctx, plan)
        if not result.ok:
            store.set_status(conn, s.sortie_id, "refused",
                             "; ".join(p.message for p in result.problems), self.actor,
                             plan=plan.to_json(), device_id=plan.device_id)
            return
        store.set_status(conn, s.sortie_id, "planned",
                         "waiting for an operator's approval" if s.approval == "operator" else "",
                         self.actor, plan=plan.to_json(), device_id=plan.device_id,
                         mission_id=plan.mission_id())
        busy.add(plan.device_id)
        if s.approval == "auto":
            self._launch(store.get(conn, s.sortie_id))

    def _launch(self, s: store.Sortie) -> None:
        plan = Plan.from_json(s.plan)

        def fly_it() -> None:
            try:
                fly(self.db, self.ctx, plan, self.actor, sortie_id=s.sortie_id)
            except BaseException as exc:  # noqa: BLE001 - reported by run(), which stops
                log.exception("sortie %d", s.sortie_id)
                self.errors.append(exc)

        t = threading.Thread(target=fly_it, name=f"sortie-{s.sortie_id}", daemon=True)
        self.flying[s.sortie_id] = t
        t.start()


def run_dispatcher(db: Database, ctx: Context, stop: threading.Event) -> None:
    """The `flights` stage of `citywatch run`: a failure that is not the database's or a
    vehicle's (a defect) stops the whole process rather than leaving sorties unwatched."""
    try:
        Dispatcher(db, ctx).run(stop)
    except Exception:
        log.critical("flights: dispatcher stopped", exc_info=True)
        import _thread

        _thread.interrupt_main()  # the main thread shuts the pipeline down, exit code non-zero


def wait_final(db: Database, sortie_id: int, timeout: float) -> store.Sortie:
    """Block until a sortie has ended (tests and `flights fly --wait`)."""
    deadline = time.monotonic() + timeout
    while True:
        with db.connection() as conn:
            s = store.get(conn, sortie_id, events=True)
        if s.status in store.FINAL or time.monotonic() > deadline:
            return s
        time.sleep(0.2)
