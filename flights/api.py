"""The operators' JSON API: the same actions as `citywatch flights ...`, as a FastAPI router
an app mounts (`app.include_router(flights.api.router(...), prefix="/api")`).

The mounting app decides who may do what: it passes two dependencies, `viewer` (read
sorties, tracks, coverage) and `operator` (plan, fly, abort, approve), each returning
the acting user's name, which every change records. There is no default: a router
without them cannot be built, so the flight controls never end up open by accident.
(No `from __future__ import annotations` here: FastAPI reads the route signatures,
whose dependency types are local to `router`.)
"""


import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from flights import coverage, operations, planner, qgc
from flights.planner import PlanError
from storage import sorties as store
from storage.db import Database


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(None, title="Point inspection of this registry subject")
    street: str | None = Field(None, title="Corridor along this registry street")
    polygon: dict[str, Any] | None = Field(None, title="Area survey of this GeoJSON polygon")
    drone: str | None = Field(None, title="Drone id (default: the nearest)")
    alt_m: float | None = Field(None, gt=0, title="Altitude above ground (m)")
    pattern: Literal["orbit", "hover"] | None = None


class FlyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: dict[str, Any] = Field(title="A QGroundControl .plan document (as `plan` returns it)")
    drone: str | None = Field(None, title="Fly it with this drone instead of the planned one")


class AbortRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("operator abort", min_length=1)


def _check(ctx: operations.Context, plan: planner.Plan) -> dict:
    result = operations.check(ctx, plan)
    return {"plan": plan.to_json(), "mission_id": plan.mission_id(), "ok": result.ok,
            "length_m": round(result.length_m, 1), "duration_s": round(result.duration_s, 1),
            "problems": [{"code": p.code, "message": p.message} for p in result.problems],
            "qgc": qgc.export(plan)}


def router(db: Database, ctx: operations.Context, *, viewer: Callable[..., str],
           operator: Callable[..., str]) -> APIRouter:
    """The /flights routes over `db`, with the app's access checks."""
    r = APIRouter(prefix="/flights", tags=["flights"])
    Viewer = Annotated[str, Depends(viewer)]
    Operator = Annotated[str, Depends(operator)]
    flying: dict[int, threading.Thread] = {}

    def sortie_or_404(conn, sortie_id: int, **kw) -> store.Sortie:
        try:
            return store.get(conn, sortie_id, **kw)
        except store.SortieNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @r.get("/sorties")
    def list_sorties(_: Viewer, status: str | None = None, limit: int = 100) -> list[dict]:
        with db.connection() as conn:
            rows = store.list_sorties(conn, status=status.split(",") if status else None,
                                      limit=min(limit, 1000))
        return [s.as_dict() for s in rows]

    @r.get("/status")
    def status(_: Viewer) -> list[dict]:
        """Sorties planned or in the air, each with its last position, battery and mode."""
        with db.connection() as conn:
            rows = store.list_sorties(conn, status=[*store.ACTIVE, "planned", "requested"])
        return [s.as_dict() for s in rows]

    @r.get("/sorties/{sortie_id}")
    def get_sortie(sortie_id: int, _: Viewer) -> dict:
        with db.connection() as conn:
            return sortie_or_404(conn, sortie_id, events=True).as_dict()

    @r.get("/sorties/{sortie_id}/track")
    def track(sortie_id: int, _: Viewer) -> dict:
        """The planned route and the flown track, with each point's distance from the route."""
        with db.connection() as conn:
            s = sortie_or_404(conn, sortie_id)
            points = store.track(conn, sortie_id)
        plan = planner.Plan.from_json(s.plan) if s.plan and "waypoints" in s.plan else None
        return {"planned": [[w.lat, w.lon, w.alt_m] for w in plan.waypoints] if plan else [],
                "home": plan.home if plan else None, "track": points,
                "off_route_m": [round(d, 1) for d in planner.deviation_m(plan, points)] if plan else []}

    @r.post("/plan")
    def plan(body: PlanRequest, _: Operator) -> dict:
        try:
            p = planner.plan_for(ctx.registry, ctx.cfg, subject=body.subject, street=body.street,
                                     polygon=body.polygon, device_id=body.drone, alt_m=body.alt_m,
                                     pattern=body.pattern)
        except (PlanError, ValueError, KeyError) as exc:
            raise HTTPException(422, str(exc)) from None
        return _check(ctx, p)

    def _parse(body: FlyRequest) -> planner.Plan:
        try:
            p = qgc.parse(body.plan)
            return planner.with_device(p, ctx.registry, body.drone) if body.drone else p
        except PlanError as exc:
            raise HTTPException(422, str(exc)) from None

    @r.post("/check")
    def check(body: FlyRequest, _: Operator) -> dict:
        return _check(ctx, _parse(body))

    @r.post("/sorties", status_code=202)
    def fly(body: FlyRequest, actor: Operator) -> dict:
        """Record the sortie and fly it in the background; poll /sorties/{id} to watch it."""
        p = _parse(body)
        if not p.device_id:
            raise HTTPException(422, "the plan names no drone; give `drone`")
        sortie_id = operations.record(db, p, actor)
        t = threading.Thread(target=operations.fly, args=(db, ctx, p, actor),
                             kwargs={"sortie_id": sortie_id}, name=f"sortie-{sortie_id}", daemon=True)
        flying[sortie_id] = t
        t.start()
        return {"sortie_id": sortie_id}

    @r.post("/sorties/{sortie_id}/abort")
    def abort(sortie_id: int, body: AbortRequest, actor: Operator) -> dict:
        with db.connection() as conn:
            sortie_or_404(conn, sortie_id)
            try:
                return store.request_abort(conn, sortie_id, actor, body.reason).as_dict()
            except store.SortieStateError as exc:
                raise HTTPException(409, str(exc)) from None

    @r.post("/sorties/{sortie_id}/approve")
    def approve(sortie_id: int, actor: Operator) -> dict:
        with db.connection() as conn:
            sortie_or_404(conn, sortie_id)
            try:
                return store.approve(conn, sortie_id, actor).as_dict()
            except store.SortieStateError as exc:
                raise HTTPException(409, str(exc)) from None

    @r.get("/coverage")
    def cover(_: Viewer, since: datetime | None = None, until: datetime | None = None,
              sortie: int | None = None) -> dict:
        with db.connection() as conn:
            if sortie is not None:
                return {"sorties": [coverage.of_sortie(conn, ctx.registry,
                                                       sortie_or_404(conn, sortie)).as_dict()]}
            until = until or datetime.now(UTC)
            return coverage.of_period(conn, ctx.registry, since or until - timedelta(days=1), until)

    return r
