"""The officers' review app and the district cockpit (FastAPI, server-rendered pages).

Every page has a JSON twin under /api/ built from the same data. Each route names the
permission it needs (`need("cases.decide")`); `review.security.allowed` is the one place
that decides. Sessions live in PostgreSQL; every state-changing request passes the CSRF
middleware; evidence files are served from the content-addressed store, verified on
every read and cached forever under their hash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import UploadFile as StarletteUpload

from domain import registry as registry_files
from review import package as packages
from review import render
from review.config import WebConfig
from review.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    IMAGE_TYPES,
    CSRFMiddleware,
    UploadRefused,
    allowed,
    check_image,
    check_password,
    check_unknown_user,
    new_secret,
    secret_hash,
)
from rules import credit
from rules.config import RulesConfig
from rules.ruleset import RuleSet
from rules.timeutil import local_day
from storage import audit
from storage import cases as case_store
from storage import credit as credit_store
from storage import frames as frame_store
from storage import registry as registry_store
from storage import review as store
from storage.db import Database
from storage.errors import StorageError
from storage.evidence import EvidenceCorrupted, EvidenceMissing, EvidenceStore

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SESSION_COOKIE = "cw_session"
_SUFFIX = dict(IMAGE_TYPES.values())  # content type -> evidence store suffix of accepted photos
_MEDIA = {suffix: media for media, suffix in _SUFFIX.items()}


@dataclass
class ReviewContext:
    """What the app needs: its database, settings, evidence root, rules and registry."""

    db: Database
    web: WebConfig
    rules: RulesConfig
    rule_set: RuleSet
    evidence_dir: Path
    registry_dir: Path

    def __post_init__(self):
        self.stores = {suffix: EvidenceStore(self.evidence_dir, suffix) for suffix in _MEDIA}
        self.tz = ZoneInfo(self.rules.timezone)


class NotSignedIn(Exception):
    pass


def _user(request: Request):
    """The signed-in user of a session cookie or an API token, or None."""
    ctx: ReviewContext = request.app.state.ctx
    header = request.headers.get("authorization", "")
    with ctx.db.connection() as conn:
        if header.lower().startswith("bearer "):
            return store.api_token_user(conn, secret_hash(header[7:].strip()))
        token = request.cookies.get(SESSION_COOKIE)
        return store.session_user(conn, secret_hash(token)) if token else None


def need(permission: str) -> Callable:
    """A dependency: the signed-in user, if their role holds `permission`."""

    def check(request: Request):
        user = _user(request)
        if user is None:
            raise NotSignedIn()
        if not allowed(user.role, permission):
            raise HTTPException(403, f"your role ({user.role}) may not do this ({permission})")
        request.state.user = user
        return user

    return check


CockpitUser = Annotated[store.User, Depends(need("cockpit.view"))]
CaseViewer = Annotated[store.User, Depends(need("cases.view"))]
Decider = Annotated[store.User, Depends(need("cases.decide"))]
Exporter = Annotated[store.User, Depends(need("cases.export"))]
UserAdmin = Annotated[store.User, Depends(need("users.manage"))]
SignedIn = Annotated[store.User, Depends(need("account.own"))]


def create_app(ctx: ReviewContext) -> FastAPI:
    """The ASGI app (wrapped in the CSRF middleware)."""
    app = FastAPI(title="citywatch review", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.ctx = ctx
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["local"] = lambda t, fmt="%Y-%m-%d %H:%M": (
        t.astimezone(ctx.tz).strftime(fmt) if isinstance(t, datetime) else (t or ""))
    env.globals["allowed"] = allowed
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(request: Request, template: str, status_code: int = 200, **data) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE) or new_secret()
        user = getattr(request.state, "user", None)
        html = env.get_template(template).render(request=request, user=user, csrf=csrf,
                                                 csrf_field=CSRF_FIELD, **data)
        resp = HTMLResponse(html, status_code=status_code)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            resp.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                            secure=ctx.web.secure_cookies, path="/")
        return resp

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "sign in or send an API token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/") or request.url.path.startswith("/evidence/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return page(request, "error.html", exc.status_code, message=exc.detail,
                    status=exc.status_code)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        resp = await call_next(request)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault(
            "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        return resp

    # -- signing in ------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/"):
        return page(request, "login.html", next=_safe_next(next), error=None)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    def login(request: Request, username: str = Form(""), password: str = Form(""),
              next: str = Form("/")):
        client = request.client.host if request.client else "?"
        window_start = datetime.now(UTC) - timedelta(seconds=ctx.web.login_window_s)
        with ctx.db.connection() as conn:
            if store.login_failures(conn, username, client, window_start) >= ctx.web.login_max_failures:
                return page(request, "login.html", 429, next=_safe_next(next), error=(
                    f"too many failed sign-ins; wait {ctx.web.login_window_s // 60} minutes"))
            found = store.user_with_hash(conn, username)
            ok = (check_password(found[1], password) if found else check_unknown_user(password))
            if not ok or found[0].disabled:
                store.record_login_failure(conn, username, client)
                return page(request, "login.html", 401, next=_safe_next(next),
                            error="wrong user name or password, or the user is disabled")
            store.clear_login_failures(conn, username)
            token = new_secret()
            store.create_session(conn, secret_hash(token), found[0].user_id,
                                 datetime.now(UTC) + timedelta(hours=ctx.web.session_hours))
        resp = RedirectResponse(_safe_next(next), status_code=303)
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                        secure=ctx.web.secure_cookies, max_age=int(ctx.web.session_hours * 3600),
                        path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, *, user: SignedIn):
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            with ctx.db.connection() as conn:
                store.end_session(conn, secret_hash(token))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- cockpit ---------------------------------------------------------------------

    def cockpit_data() -> dict[str, Any]:
        with ctx.db.connection() as conn:
            return store.cockpit_counters(conn, ctx.web.silent_after_s)

    @app.get("/api/cockpit", tags=["cockpit"])
    def api_cockpit(*, user: CockpitUser):
        """Counters of the cockpit: open cases, devices, readings, dead letters, frames."""
        return cockpit_data()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def cockpit(request: Request, *, user: CockpitUser):
        reg = registry_files.load(ctx.registry_dir)
        with ctx.db.connection() as conn:
            codes = {r.subject_id: r.code for r in credit_store.current(conn)}
            points = store.open_case_points(conn)
        areas = [{"geometry": s.geometry, "properties": {"name": s.name}}
                 for s in reg.subjects if s.kind == "area"]
        subjects = [(s.subject_id, s.kind, s.name, s.geometry) for s in reg.subjects
                    if s.kind != "area"]
        svg = render.map_svg(areas, list(reg.streets), subjects, points, codes)
        return page(request, "cockpit.html", counters=cockpit_data(), map_svg=Markup(svg),
                    codes={c: sum(1 for v in codes.values() if v == c)
                           for c in ("yellow", "red")},
                    merchants=sum(1 for s in reg.subjects if s.kind == "merchant"))

    # -- the queue -------------------------------------------------------------------

    def queue(status, rule, area, evidence, since, until, sort, after):
        try:
            f = store.QueueFilter(status or None, rule or None, area or None, evidence or None,
                                  None, _day(since, ctx.tz), _day(until, ctx.tz, 1))
            with ctx.db.connection() as conn:
                rows, nxt = store.queue_page(conn, f, sort or "oldest", after or None,
                                             ctx.web.page_size)
                choices = store.queue_choices(conn)
        except (StorageError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None
        return rows, nxt, choices

    @app.get("/api/cases", tags=["cases"])
    def api_cases(status: str = "", rule: str = "", area: str = "", evidence: str = "",
                  since: str = "", until: str = "", sort: str = "oldest", after: str = "",
                  *, user: CaseViewer):
        """One page of the queue; `next` is the cursor of the following page."""
        rows, nxt, _ = queue(status, rule, area, evidence, since, until, sort, after)
        return {"cases": [c.as_dict() for c in rows], "next": nxt}

    @app.get("/cases", response_class=HTMLResponse, include_in_schema=False)
    def cases_page(request: Request, status: str = "", rule: str = "", area: str = "",
                   evidence: str = "", since: str = "", until: str = "", sort: str = "oldest",
                   after: str = "", *, user: CaseViewer):
        rows, nxt, choices = queue(status, rule, area, evidence, since, until, sort, after)
        params = {"status": status, "rule": rule, "area": area, "evidence": evidence,
                  "since": since, "until": until, "sort": sort}
        return page(request, "queue.html", cases=rows, next=nxt, params=params,
                    choices=choices, statuses=case_store.STATUSES, sorts=list(store.SORTS))

    # -- one case --------------------------------------------------------------------

    def case_data(case_id: int) -> dict[str, Any]:
        with ctx.db.connection() as conn:
            detail = _case_or_404(conn, case_id)
            c = detail.case
            frames = [e for e in detail.evidence if e.kind == "frame"]
            times = _frame_times(frames)
            dets = frame_store.detections_of_frames(conn, times)
            quality = frame_store.frames_by_hash(conn, times)
            subject = store.subject_row(conn, c.subject_id)
            device_ids = sorted({e.content["device_id"] for e in detail.evidence
                                 if e.kind == "series" and e.content}
                                | {q.source_id for q in quality.values()})
            devices = [d for d in (registry_store.device(conn, i) for i in device_ids) if d]
            entries = audit.entries(conn, "case", str(case_id))
            subs = store.submissions(conn, case_id)
            links = store.party_links(conn, case_id)
            photos = store.field_photos(conn, case_id)
            fused = [case_store.get_case(conn, i).case for i in detail.fused]
            code = credit.code_at(credit_store.violations(conn, c.subject_id),
                                  datetime.now(UTC), ctx.rules.credit)
            neighbours = store.queue_page(conn, store.QueueFilter(status=c.status), "oldest",
                                          store.encode_cursor([c.episode_start, c.case_id]), 1)[0]
        day = local_day(c.episode_start, ctx.tz)
        return {"case": c, "detail": detail, "frames": [
                    {"sha256": e.ref, "meta": e.meta, "detections": dets.get(e.ref, []),
                     "quality": quality.get(e.ref)} for e in frames],
                "series": [e for e in detail.evidence if e.kind == "series"],
                "subject": subject, "devices": [(d, d.valid_at(day)) for d in devices],
                "event_day": day, "audit": entries, "submissions": subs, "links": links,
                "field_photos": photos,
                "fused": fused, "credit": code, "next_case": neighbours[0].case_id
                if neighbours else None, "rule": _rule(ctx.rule_set, c.rule_id),
                "penalty": penalty_state(c, links, subs)}

    def penalty_state(c, links, subs) -> dict[str, Any]:
        """Whether a penalty may be decided: the party answered or its window passed."""
        if not links:
            return {"open": False, "why": "the party has not been notified yet"}
        if subs:
            return {"open": True, "why": "the party has answered"}
        respond_by = max(link.respond_by for link in links)
        if datetime.now(UTC) >= respond_by:
            return {"open": True, "why": f"the window to answer ended {respond_by:%Y-%m-%d}"}
        return {"open": False, "why": f"the party may answer until "
                f"{respond_by.astimezone(ctx.tz):%Y-%m-%d %H:%M} and has not yet"}

    def charts(data: dict[str, Any]) -> list[dict[str, Any]]:
        c, rule = data["case"], data["rule"]
        metric = getattr(rule, "metric", None) if rule else None
        out = []
        for e in data["series"]:
            snap = e.content or {}
            fields = [f for f in snap.get("fields", [])[1:]]
            shown = metric if metric in fields else next(
                (f for f in fields if f.endswith(("_mg_m3", "_ug_m3"))), fields[0] if fields else "")
            limit = c.summary.get("limit") if metric == shown else None
            window = rule.window if rule is not None and limit is not None else None
            svg = render.series_svg(snap, shown, limit=limit, window=window,
                                    op=getattr(rule, "op", ">"),
                                    episode=(c.episode_start, c.episode_end), tz=ctx.tz)
            out.append({"evidence": e, "metric": shown, "svg": Markup(svg), "limit": limit})
        return out

    @app.get("/api/cases/{case_id}", tags=["cases"])
    def api_case(case_id: int, *, user: CaseViewer):
        """A case with its evidence, detections, devices, party answers and audit history."""
        d = case_data(case_id)
        return d["case"].as_dict() | {
            "frames": [{"sha256": f["sha256"], "meta": f["meta"], "detections": [
                _detection_json(d) for d in f["detections"]], "url": f"/evidence/{f['sha256']}",
                "annotated_url": f"/evidence/{f['sha256']}/annotated"} for f in d["frames"]],
            "series": [{"ref": e.ref, "sha256": e.sha256, "snapshot": e.content}
                       for e in d["series"]],
            "devices": [{"device_id": dev.device_id, "kind": dev.kind,
                         "certificate_no": dev.certificate_no, "problems_at_event": p}
                        for dev, p in d["devices"]],
            "fused": [c.case_id for c in d["fused"]],
            "submissions": [{"statement": s.statement, "photos": s.photos,
                             "submitted_at": s.submitted_at} for s in d["submissions"]],
            "field_photos": [{"sha256": p.sha256, "note": p.note, "actor": p.actor,
                              "added_at": p.added_at} for p in d["field_photos"]],
            "penalty": d["penalty"], "credit_code": d["credit"].code,
            "audit": [e.body() | {"hash": e.hash, "prev_hash": e.prev_hash} for e in d["audit"]]}

    @app.get("/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
    def case_page(request: Request, case_id: int, *, user: CaseViewer):
        d = case_data(case_id)
        return page(request, "case.html", **d, charts=charts(d), actions=actions_for(d["case"]))

    def actions_for(c: case_store.Case) -> list[tuple[str, str]]:
        status = c.status
        out = []
        if status in ("flagged", "under_review"):
            out += [("confirm", "Confirm (c)"), ("dismiss", "Dismiss (d)"),
                    ("more_evidence", "Needs more evidence (m)")]
        if status == "confirmed":
            out.append(("notify", "Notify the party"))
        if status == "notified":
            out.append(("rectified", "Rectified"))
        if status == "rectified":
            out.append(("close", "Close"))
        if status in ("notified", "rectified", "closed"):
            out.append(("penalty", "Decide the penalty"))
        return out

    def decide(case_id: int, action: str, reason: str, user) -> dict[str, Any]:
        """Carry out one decision as `user`; returns what happened (party link included)."""
        reason = reason.strip()
        if not reason:
            raise HTTPException(422, "reason: a decision needs a reason")
        data = case_data(case_id)
        c = data["case"]
        if action not in dict(actions_for(c)):
            raise HTTPException(409, f"case {case_id} is {c.status}: cannot {action}")
        actor = user.username
        out: dict[str, Any] = {"case_id": case_id, "action": action}
        with ctx.db.connection() as conn:
            # refused before anything changes: transition() commits each step
            if (action == "confirm" and _turns_red(conn, c, ctx.rules)
                    and not allowed(user.role, "cases.second_signature")):
                raise HTTPException(403, f"confirming case {case_id} turns {c.subject_id}'s "
                                    "credit code red: a supervisor must sign it")
            if action in ("confirm", "dismiss", "more_evidence") and c.status == "flagged":
                case_store.transition(conn, case_id, "under_review", actor, reason)
            if action == "confirm":
                case_store.transition(conn, case_id, "confirmed", actor, reason)
            elif action == "dismiss":
                case_store.transition(conn, case_id, "dismissed", actor, reason)
            elif action == "more_evidence":
                store.record_decision_note(conn, case_id, actor, "needs_more_evidence",
                                           {"reason": reason})
            elif action == "notify":
                token = new_secret()
                now = datetime.now(UTC)
                store.issue_party_link(
                    conn, secret_hash(token), case_id, actor,
                    now + timedelta(days=ctx.web.party_link_days),
                    now + timedelta(days=ctx.web.respond_days_for(c.rule_id)))
                case_store.transition(conn, case_id, "notified", actor, reason)
                out["party_link"] = f"/party/{token}"
            elif action == "rectified":
                case_store.transition(conn, case_id, "rectified", actor, reason)
            elif action == "close":
                case_store.transition(conn, case_id, "closed", actor, reason)
            elif action == "penalty":
                if not data["penalty"]["open"]:
                    raise HTTPException(409, "the penalty cannot be decided yet: "
                                        + data["penalty"]["why"])
                store.record_decision_note(conn, case_id, actor, "penalty_decided",
                                           {"reason": reason})
            if action in ("confirm", "rectified", "close"):
                credit.refresh(conn, ctx.rules.credit, actor=actor)
                conn.commit()
        return out

    @app.post("/cases/{case_id}/decision", response_class=HTMLResponse, include_in_schema=False)
    def decision_form(request: Request, case_id: int, action: str = Form(""),
                      reason: str = Form(""), *, user: Decider):
        try:
            out = decide(case_id, action, reason, user)
        except case_store.InvalidTransition as exc:
            raise HTTPException(409, str(exc)) from None
        if "party_link" in out:
            return page(request, "issued.html", case_id=case_id,
                        link=str(request.base_url).rstrip("/") + out["party_link"])
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    @app.post("/api/cases/{case_id}/decision", tags=["cases"])
    def api_decision(case_id: int, body: dict[str, str], *, user: Decider):
        """Decide: {"action": confirm|dismiss|more_evidence|notify|rectified|close|penalty,
        "reason": "..."}. Notify answers with the party's one-time link (shown once)."""
        try:
            return decide(case_id, body.get("action", ""), body.get("reason", ""), user)
        except case_store.InvalidTransition as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/cases/{case_id}/package.zip", tags=["cases"])
    def package(case_id: int, *, user: Exporter):
        """The evidence package of a case (ZIP with manifest.json)."""
        try:
            data = export_package(ctx, case_id)
        except StorageError as exc:  # an evidence file missing or altered on disk
            log.error("%s", exc)
            raise HTTPException(500, f"cannot export case {case_id}: {exc}") from None
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="case-{case_id}.zip"'})

    # -- evidence files --------------------------------------------------------------

    def evidence_bytes(sha256: str) -> tuple[bytes, str]:
        for suffix, st in ctx.stores.items():
            try:
                if not st.exists(sha256):
                    continue
                return st.get(sha256), _MEDIA[suffix]
            except ValueError:
                raise HTTPException(404, "not an evidence hash") from None
            except EvidenceCorrupted as exc:
                log.error("%s", exc)
                raise HTTPException(500, f"evidence {sha256} fails its hash check: it was "
                                    "altered on disk and is not served") from None
            except EvidenceMissing:
                break
        raise HTTPException(404, f"no evidence file {sha256}")

    def image(data: bytes, media: str) -> Response:
        return Response(data, media_type=media, headers={
            "Cache-Control": "private, max-age=31536000, immutable"})

    def check_case_file(sha256: str) -> None:
        with ctx.db.connection() as conn:
            if not store.case_belongs(conn, sha256):
                raise HTTPException(404, f"{sha256} is no case's evidence")

    @app.get("/evidence/{sha256}", tags=["evidence"])
    def evidence_file(sha256: str, *, user: CaseViewer):
        """An evidence file's original bytes, verified against its hash."""
        check_case_file(sha256)
        return image(*evidence_bytes(sha256))

    @app.get("/evidence/{sha256}/annotated", tags=["evidence"])
    def evidence_annotated(sha256: str, *, user: CaseViewer):
        """A copy of a frame with its detection boxes drawn on it."""
        data, _ = evidence_bytes(sha256)
        with ctx.db.connection() as conn:
            ts = store.evidence_frame_time(conn, sha256)
            if ts is None:
                raise HTTPException(404, f"{sha256} is no case's evidence")
            dets = frame_store.detections_of_frames(conn, {sha256: ts})[sha256]
        drawn = render.annotate(data, dets)
        if drawn is None:
            raise HTTPException(415, "this evidence file is not an image that can be drawn on")
        return image(drawn, "image/jpeg")

    # -- subjects, trends, inspections -----------------------------------------------

    def subject_data(subject_id: str) -> dict[str, Any]:
        with ctx.db.connection() as conn:
            row = store.subject_row(conn, subject_id)
            if row is None:
                raise HTTPException(404, f"no subject {subject_id}")
            today = datetime.now(ctx.tz).date()
            return {"subject": row, "devices": [
                        d + (registry_store.device(conn, d[0]).valid_at(today),)
                        for d in store.subject_devices(conn, subject_id)],
                    "cases": case_store.list_cases(conn, subject_id=subject_id),
                    "history": credit_store.history(conn, subject_id),
                    "code": credit.code_at(credit_store.violations(conn, subject_id),
                                           datetime.now(UTC), ctx.rules.credit)}

    @app.get("/api/subjects/{subject_id}", tags=["subjects"])
    def api_subject(subject_id: str, *, user: CaseViewer):
        """A subject: credit code and history, devices with certification, cases."""
        d = subject_data(subject_id)
        s = d["subject"]
        return {"subject_id": s[0], "kind": s[1], "name": s[2], "area_id": s[3],
                "props": s[5], "code": d["code"].code, "code_reason": d["code"].reason,
                "history": [{"code": h.code, "since": h.since, "reason": h.reason}
                            for h in d["history"]],
                "devices": [{"device_id": x[0], "kind": x[1], "certificate_no": x[3],
                             "certified_until": x[5], "calibration_due": x[7],
                             "status": x[8], "problems_today": x[9]} for x in d["devices"]],
                "cases": [c.as_dict() for c in d["cases"]]}

    @app.get("/subjects/{subject_id}", response_class=HTMLResponse, include_in_schema=False)
    def subject_page(request: Request, subject_id: str, *, user: CaseViewer):
        return page(request, "subject.html", **subject_data(subject_id))

    def trend_data() -> dict[str, Any]:
        with ctx.db.connection() as conn:
            rows = case_store.trends(conn, ctx.rules.timezone)
        weeks = sorted({r[0] for r in rows})
        by_rule: dict[str, dict[date, int]] = {}
        by_area: dict[str, dict[date, int]] = {}
        for week, rule_id, area, n in rows:
            by_rule.setdefault(rule_id, {}).setdefault(week, 0)
            by_rule[rule_id][week] += n
            by_area.setdefault(area or "-", {}).setdefault(week, 0)
            by_area[area or "-"][week] += n
        return {"weeks": weeks, "by_rule": by_rule, "by_area": by_area, "rows": rows}

    @app.get("/api/trends", tags=["trends"])
    def api_trends(*, user: CaseViewer):
        """Cases per local week, rule and area (高发易发问题趋势)."""
        return [{"week": w, "rule_id": r, "area_id": a, "cases": n}
                for w, r, a, n in trend_data()["rows"]]

    @app.get("/trends", response_class=HTMLResponse, include_in_schema=False)
    def trends_page(request: Request, *, user: CaseViewer):
        d = trend_data()
        peak = max([n for series in d["by_rule"].values() for n in series.values()] or [1])
        return page(request, "trends.html", **d, peak=peak)

    @app.get("/api/inspections", tags=["inspections"])
    def api_inspections(*, user: CaseViewer):
        """Open cases grouped per subject for one visit (综合查一次)."""
        with ctx.db.connection() as conn:
            tasks = case_store.inspection_tasks(conn)
        return [{"subject_id": t.subject_id, "name": t.subject_name, "kind": t.subject_kind,
                 "area_id": t.area_id, "case_ids": t.case_ids, "rules": t.rule_ids,
                 "departments": t.departments, "first_seen": t.first_seen,
                 "last_seen": t.last_seen} for t in tasks]

    @app.get("/inspections", response_class=HTMLResponse, include_in_schema=False)
    def inspections_page(request: Request, *, user: CaseViewer):
        with ctx.db.connection() as conn:
            tasks = case_store.inspection_tasks(conn)
        return page(request, "inspections.html", tasks=tasks)

    # -- accounts and users ----------------------------------------------------------

    @app.get("/account", response_class=HTMLResponse, include_in_schema=False)
    def account(request: Request, *, user: SignedIn):
        with ctx.db.connection() as conn:
            tokens = store.api_tokens(conn, user.user_id)
        return page(request, "account.html", tokens=tokens, new_token=None)

    @app.post("/account/tokens", response_class=HTMLResponse, include_in_schema=False)
    def new_token(request: Request, label: str = Form(""), *, user: SignedIn):
        if not label.strip():
            raise HTTPException(422, "label: name the integration this token is for")
        token = new_secret()
        with ctx.db.connection() as conn:
            store.add_api_token(conn, secret_hash(token), user.user_id, label.strip())
            tokens = store.api_tokens(conn, user.user_id)
        return page(request, "account.html", tokens=tokens, new_token=token)

    @app.get("/api/users", tags=["users"])
    def api_users(*, user: UserAdmin):
        """Every user with role and state (no secrets)."""
        with ctx.db.connection() as conn:
            return [{"username": u.username, "role": u.role, "disabled": u.disabled,
                     "created_at": u.created_at} for u in store.users(conn)]

    @app.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
    def users_page(request: Request, *, user: UserAdmin):
        with ctx.db.connection() as conn:
            return page(request, "users.html", users=store.users(conn))

    @app.post("/admin/users/{username}/disable", include_in_schema=False)
    def disable_user(username: str, *, user: UserAdmin):
        if username == user.username:
            raise HTTPException(409, "you cannot disable yourself")
        with ctx.db.connection() as conn:
            try:
                store.set_disabled(conn, username, True, actor=user.username)
            except StorageError as exc:
                raise HTTPException(404, str(exc)) from None
        return RedirectResponse("/admin/users", status_code=303)

    # -- the party's page ------------------------------------------------------------

    def party_link(token: str) -> store.PartyLink:
        with ctx.db.connection() as conn:
            link = store.party_link(conn, secret_hash(token))
        if link is None:
            raise HTTPException(404, "this link is not valid")
        if link.expires_at <= datetime.now(UTC):
            raise HTTPException(410, "this link has expired; please contact the bureau")
        return link

    def party_view(request: Request, token: str, link, status=200, error=None, done=False):
        with ctx.db.connection() as conn:
            c = case_store.get_case(conn, link.case_id)
            subject = store.subject_row(conn, c.case.subject_id)
        frames = [e.ref for e in c.evidence if e.kind == "frame"]
        return page(request, "party.html", status, case=c.case, subject=subject,
                    frames=frames, link=link, token=token, error=error, done=done,
                    max_mb=ctx.web.upload_max_bytes / 1e6)

    @app.get("/party/{token}", response_class=HTMLResponse, include_in_schema=False)
    def party_page(request: Request, token: str):
        return party_view(request, token, party_link(token))

    @app.post("/party/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def party_submit(request: Request, token: str):
        link = party_link(token)
        if link.used_at is not None:
            return party_view(request, token, link, 409, "you have already answered")
        form = await request.form(max_part_size=ctx.web.upload_max_bytes + 1)
        try:
            statement = str(form.get("statement") or "").strip()
            if not statement:
                return party_view(request, token, link, 422,
                                  "statement: please write your statement (陈述申辩)")
            photos = []
            for upload in form.getlist("photos"):
                if not isinstance(upload, StarletteUpload) or not upload.filename:
                    continue
                data = await upload.read(ctx.web.upload_max_bytes + 1)
                try:
                    media, suffix = check_image(data, upload.filename, ctx.web.upload_max_bytes)
                except UploadRefused as exc:
                    return party_view(request, token, link, 415, f"photos: {exc}")
                photos.append((data, media, suffix))
        finally:
            await form.close()
        described = []
        for data, media, suffix in photos:
            sha = ctx.stores[suffix].put(data)
            described.append({"sha256": sha, "content_type": media, "bytes": len(data)})
        with ctx.db.connection() as conn:
            try:
                store.add_submission(conn, link, statement, described)
            except StorageError as exc:
                return party_view(request, token, link, 409, str(exc))
        return party_view(request, token, party_link(token), done=True)

    @app.get("/party/{token}/evidence/{sha256}", include_in_schema=False)
    def party_evidence(token: str, sha256: str):
        link = party_link(token)
        with ctx.db.connection() as conn:
            refs = {e.ref for e in case_store.evidence(conn, link.case_id) if e.kind == "frame"}
        if sha256 not in refs:
            raise HTTPException(404, "not evidence of this case")
        data, _ = evidence_bytes(sha256)
        with ctx.db.connection() as conn:
            dets = frame_store.detections_of_frames(
                conn, {sha256: store.evidence_frame_time(conn, sha256)})
        return image(render.annotate(data, dets[sha256]) or data, "image/jpeg")

    @app.get("/cases/{case_id}/photos/{sha256}", tags=["evidence"])
    def case_photo(case_id: int, sha256: str, *, user: CaseViewer):
        with ctx.db.connection() as conn:
            if store.photo_of_case(conn, case_id, sha256) is None:
                raise HTTPException(404, "not a photo of this case")
        return image(*evidence_bytes(sha256))

    @app.post("/cases/{case_id}/photos", response_class=HTMLResponse, include_in_schema=False)
    async def add_photo(request: Request, case_id: int, *, user: Decider):
        """An officer's photo taken on the spot, added to the case through the evidence store."""
        form = await request.form(max_part_size=ctx.web.upload_max_bytes + 1)
        try:
            note = str(form.get("note") or "").strip()
            upload = form.get("photo")
            if not note:
                raise HTTPException(422, "note: say what the photo shows")
            if not isinstance(upload, StarletteUpload) or not upload.filename:
                raise HTTPException(422, "photo: choose a photo")
            data = await upload.read(ctx.web.upload_max_bytes + 1)
            try:
                media, suffix = check_image(data, upload.filename, ctx.web.upload_max_bytes)
            except UploadRefused as exc:
                raise HTTPException(415, f"photo: {exc}") from None
        finally:
            await form.close()
        with ctx.db.connection() as conn:
            _case_or_404(conn, case_id)
        sha = ctx.stores[suffix].put(data)
        with ctx.db.connection() as conn:
            store.add_field_photo(conn, case_id, sha, media, len(data), note, user.username)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    return CSRFMiddleware(app, ctx.web.upload_max_bytes * 4 + 65536)


def _turns_red(conn, c: case_store.Case, policy: RulesConfig) -> bool:
    """Whether confirming this case would make its subject's credit code red."""
    if c.kind != "violation":
        return False
    now = datetime.now(UTC)
    vs = credit_store.violations(conn, c.subject_id)
    before = credit.code_at(vs, now, policy.credit).code
    after = credit.code_at(vs + [credit_store.Violation(c.case_id, c.subject_id, c.severity,
                                                        c.episode_start, None, None)],
                           now, policy.credit).code
    return after == "red" and before != "red"


def _case_or_404(conn, case_id: int) -> case_store.CaseDetail:
    try:
        return case_store.get_case(conn, case_id)
    except case_store.CaseNotFound:
        raise HTTPException(404, f"no case {case_id}") from None


def _detection_json(d: frame_store.StoredDetection) -> dict[str, Any]:
    x = d.detection
    return {"class": x.class_name, "confidence": x.confidence, "box": [x.x1, x.y1, x.x2, x.y2],
            "subject_id": x.subject_id, "zone_kind": x.zone_kind, "model_name": d.model.name,
            "model_version": d.model.version, "weights_sha256": d.model.weights_sha256}


def _frame_times(items: list[case_store.EvidenceItem]) -> dict[str, datetime | None]:
    """sha256 -> event time of a case's frames, as recorded when they were attached."""
    return {e.ref: datetime.fromisoformat(e.meta["ts"]) if e.meta.get("ts") else None
            for e in items}


def _rule(rule_set: RuleSet, rule_id: str):
    return next((r for r in rule_set.rules if r.id == rule_id), None)


def _safe_next(target: str) -> str:
    """Only a path on this site (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _day(text: str, tz: ZoneInfo, plus_days: int = 0) -> datetime | None:
    if not text:
        return None
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"date {text!r}: expected YYYY-MM-DD") from None
    return datetime(d.year, d.month, d.day, tzinfo=tz) + timedelta(days=plus_days)


def export_package(ctx: ReviewContext, case_id: int) -> bytes:
    """The evidence package of one case (see review.package)."""
    with ctx.db.connection() as conn:
        detail = _case_or_404(conn, case_id)
        c = detail.case
        times = _frame_times([e for e in detail.evidence if e.kind == "frame"])
        shas = list(times)
        dets = frame_store.detections_of_frames(conn, times)
        entries = audit.entries(conn, "case", str(case_id))
        subs = store.submissions(conn, case_id)
        field = store.field_photos(conn, case_id)
    frames = []
    for sha in shas:
        original = ctx.stores[".jpg"].get(sha)
        frames.append((sha, original, render.annotate(original, dets[sha])))
    photos = []
    for s in subs:
        for p in s.photos:
            suffix = _SUFFIX[p["content_type"]]
            photos.append((p["sha256"], suffix, ctx.stores[suffix].get(p["sha256"])))
    for p in field:
        suffix = _SUFFIX[p.content_type]
        photos.append((p.sha256, suffix, ctx.stores[suffix].get(p.sha256)))
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]))
    report = env.get_template("report.html").render(
        case=c, detail=detail, detections=dets, entries=entries, submissions=subs,
        generated=datetime.now(ctx.tz), tz=ctx.tz)
    return packages.build(
        c.as_dict() | {"fused": detail.fused,
                       "transitions": [{"from": t.from_status, "to": t.to_status,
                                        "actor": t.actor, "reason": t.reason, "at": t.at}
                                       for t in detail.transitions],
                       "detections": {sha: [_detection_json(d) for d in ds]
                                      for sha, ds in dets.items()},
                       "field_photos": [{"sha256": p.sha256, "note": p.note, "actor": p.actor,
                                         "added_at": p.added_at} for p in field]},
        frames, [(e.sha256, e.content) for e in detail.evidence if e.kind == "series"],
        photos, [{"statement": s.statement, "photos": [p["sha256"] for p in s.photos],
                  "submitted_at": s.submitted_at} for s in subs], entries, report)
