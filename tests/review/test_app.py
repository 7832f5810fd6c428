"""The review app in-process (FastAPI TestClient) on real cases in a real database."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from review.package import verify_package
from storage import audit
from storage import cases as case_store
from storage import credit as credit_store
from storage import review as review_store
from tests.review.conftest import ROLES, login, scene_jpeg

ALLOWED, REFUSED, SIGN_IN = 200, 403, "sign-in"

# (method, path template, roles allowed); everyone else is refused, anonymous must sign in
ROUTES = [
    ("GET", "/", ROLES),
    ("GET", "/api/cockpit", ROLES),
    ("GET", "/cases", ("officer", "supervisor", "operator")),
    ("GET", "/api/cases", ("officer", "supervisor", "operator")),
    ("GET", "/cases/{fume}", ("officer", "supervisor", "operator")),
    ("GET", "/api/cases/{fume}", ("officer", "supervisor", "operator")),
    ("GET", "/evidence/{frame}", ("officer", "supervisor", "operator")),
    ("GET", "/evidence/{frame}/annotated", ("officer", "supervisor", "operator")),
    ("GET", "/cases/{fume}/package.zip", ("officer", "supervisor")),
    ("POST", "/cases/{drone}/decision", ("officer", "supervisor")),
    ("POST", "/api/cases/{drone}/decision", ("officer", "supervisor")),
    ("POST", "/cases/{drone}/photos", ("officer", "supervisor")),
    ("GET", "/subjects/M-00001", ("officer", "supervisor", "operator")),
    ("GET", "/api/subjects/M-00001", ("officer", "supervisor", "operator")),
    ("GET", "/trends", ("officer", "supervisor", "operator")),
    ("GET", "/api/trends", ("officer", "supervisor", "operator")),
    ("GET", "/inspections", ("officer", "supervisor", "operator")),
    ("GET", "/api/inspections", ("officer", "supervisor", "operator")),
    ("GET", "/admin/users", ("admin",)),
    ("GET", "/api/users", ("admin",)),
    ("POST", "/admin/users/nobody/disable", ("admin",)),
    ("GET", "/account", ROLES),
]


def _call(client, method, path, env):
    path = path.format(fume=env.fume_case, drone=env.drone_case, frame=env.frames[0])
    if method == "GET":
        return client.get(path, follow_redirects=False)
    token = client.cookies.get("cw_csrf")
    if path.startswith("/api/"):
        return client.post(path, json={"action": "more_evidence", "reason": "role check"},
                           headers={"X-CSRF-Token": token or ""}, follow_redirects=False)
    return client.post(path, data={"csrf_token": token, "action": "more_evidence",
                                   "reason": "role check"}, follow_redirects=False)


def test_every_route_checks_the_role(app, env):
    for role in (None, *ROLES):
        _check_routes(app, env, role)


def _check_routes(app, env, role):
    with TestClient(app) as client:
        if role:
            assert login(client, role).status_code == 303
        else:
            client.get("/login")  # a CSRF cookie, so refusals are about the role
        outcome = {}
        for method, path, _roles in ROUTES:
            r = _call(client, method, path, env)
            if r.status_code in (303, 401) and (r.status_code == 401 or "/login" in
                                                r.headers.get("location", "")):
                outcome[(method, path)] = SIGN_IN
            elif r.status_code == 403:
                outcome[(method, path)] = REFUSED
            else:
                # past the permission check: done, or refused for what was (not) sent
                assert r.status_code in (200, 303, 404, 422), (method, path, r.status_code,
                                                               r.text[:200])
                outcome[(method, path)] = ALLOWED
    expected = {(m, p): (SIGN_IN if role is None else ALLOWED if role in roles else REFUSED)
                for m, p, roles in ROUTES}
    assert outcome == expected


def test_post_without_csrf_token_is_refused(app, env):
    with TestClient(app) as client:
        login(client, "officer")
        r = client.post(f"/cases/{env.drone_case}/decision",
                        data={"action": "confirm", "reason": "stalls on the pavement"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = client.post(f"/cases/{env.drone_case}/decision", data={
            "action": "confirm", "reason": "x", "csrf_token": "forged"})
        assert r.status_code == 403
        # a login form posted from elsewhere (no cookie) is refused too
        client.cookies.clear()
        assert client.post("/login", data={"username": "officer", "password": "x"}).status_code == 403
    with env.db.connection() as conn:
        assert case_store.get_case(conn, env.drone_case).case.status == "flagged"


def test_login_throttled_after_repeated_failures(app, env):
    env.config.web.login_max_failures = 3
    with TestClient(app) as client:
        for _ in range(3):
            assert login(client, "officer", "wrong password!").status_code == 401
        r = login(client, "officer")  # right password, but too many failures just now
        assert r.status_code == 429 and "too many failed sign-ins" in r.text
    with env.db.connection() as conn:
        conn.execute("DELETE FROM login_failures")
        conn.commit()
    with TestClient(app) as client:
        assert login(client, "officer").status_code == 303


def test_session_cookie_flags_and_expiry(app, env):
    env.config.web.secure_cookies = True
    with TestClient(app, base_url="https://testserver") as client:
        r = login(client, "officer")
        cookie = r.headers["set-cookie"]
        assert "cw_session=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
        assert "samesite=lax" in cookie.lower()
        assert client.get("/cases").status_code == 200
        with env.db.connection() as conn:
            conn.execute("UPDATE web_sessions SET expires_at = now() - interval '1 second'")
            conn.commit()
        assert client.get("/cases", follow_redirects=False).status_code == 303


def test_decision_needs_a_reason_and_is_recorded_as_the_user(app, env):
    with TestClient(app) as client:
        login(client, "officer")
        token = client.cookies.get("cw_csrf")
        r = client.post(f"/cases/{env.fume_case}/decision",
                        data={"action": "confirm", "reason": "  ", "csrf_token": token})
        assert r.status_code == 422 and "reason" in r.text
        r = client.post(f"/cases/{env.fume_case}/decision", data={
            "action": "confirm", "reason": "three 10-minute means above 2.0", "csrf_token": token})
        assert r.status_code == 200  # redirected back to the case page
        page = client.get(f"/cases/{env.fume_case}").text
        assert 'id="case-status">confirmed' in page
    with env.db.connection() as conn:
        detail = case_store.get_case(conn, env.fume_case)
        entries = audit.entries(conn, "case", str(env.fume_case))
        assert audit.verify_chain(conn) == []
        assert [(t.from_status, t.to_status, t.actor) for t in detail.transitions] == [
            ("flagged", "under_review", "officer"), ("under_review", "confirmed", "officer")]
        assert entries[-1].action == "credit_code" or any(
            e.action == "case_transition" and e.actor == "officer" for e in entries)
        assert {r.subject_id: r.code for r in credit_store.current(conn)}["M-00001"] == "yellow"


def test_confirmation_turning_a_code_red_needs_a_supervisor(app, env):
    with env.db.connection() as conn:  # two earlier confirmed violations of M-00002
        for day in ("2026-11-10", "2026-11-12"):
            start = datetime.fromisoformat(f"{day}T10:00:00+08:00")
            cid, _ = case_store.upsert_case(conn, case_store.CaseDraft(
                "drone.street_vending", 1, "M-00002", start, start + timedelta(minutes=5),
                "violation", "general", "stall", "", {}), "rule-engine")
            conn.commit()
            case_store.transition(conn, cid, "under_review", "officer", "seen")
            case_store.transition(conn, cid, "confirmed", "officer", "seen")
    body = {"action": "confirm", "reason": "two stalls in the frontage"}
    with TestClient(app) as client:
        login(client, "officer")
        r = client.post(f"/api/cases/{env.drone_case}/decision", json=body,
                        headers={"X-CSRF-Token": client.cookies.get("cw_csrf")})
        assert r.status_code == 403 and "supervisor" in r.json()["detail"]
    with env.db.connection() as conn:  # the refused confirmation changed nothing
        assert case_store.get_case(conn, env.drone_case).case.status == "flagged"
    with TestClient(app) as client:
        login(client, "supervisor")
        r = client.post(f"/api/cases/{env.drone_case}/decision", json=body,
                        headers={"X-CSRF-Token": client.cookies.get("cw_csrf")})
        assert r.status_code == 200, r.text


def _notify(client, env, case_id) -> str:
    token = client.cookies.get("cw_csrf")
    for action in ("confirm", "notify"):
        r = client.post(f"/cases/{case_id}/decision", data={
            "action": action, "reason": f"{action}: evidence is clear", "csrf_token": token})
        assert r.status_code == 200, r.text
    return r.text.split('id="party-link" readonly value="')[1].split('"')[0]


def test_party_link_upload_and_penalty_window(app, env):
    with TestClient(app) as officer:
        login(officer, "officer")
        link = _notify(officer, env, env.fume_case)
        path = link.replace("http://testserver", "")
        token = officer.cookies.get("cw_csrf")
        # the penalty waits for the party's answer or the end of its window
        r = officer.post(f"/cases/{env.fume_case}/decision", data={
            "action": "penalty", "reason": "fine", "csrf_token": token})
        assert r.status_code == 409 and "may answer until" in r.text
    with TestClient(app) as party:
        page = party.get(path)
        assert page.status_code == 200 and "油烟超标" in page.text
        csrf = party.cookies.get("cw_csrf")
        pdf = b"%PDF-1.7\n" + b"x" * 2000
        r = party.post(path, data={"statement": "we repaired it", "csrf_token": csrf},
                       files={"photos": ("purifier.jpg", pdf, "image/jpeg")})
        assert r.status_code == 415 and "not a JPEG or PNG photo" in r.text
        big = b"\xff\xd8\xff" + b"0" * (env.config.web.upload_max_bytes + 10)
        r = party.post(path, data={"statement": "we repaired it", "csrf_token": csrf},
                       files={"photos": ("big.jpg", big, "image/jpeg")})
        assert r.status_code in (413, 415) and "limit" in r.text
        r = party.post(path, data={"statement": "", "csrf_token": csrf})
        assert r.status_code == 422 and "statement" in r.text
        photo = scene_jpeg(99, [])
        r = party.post(path, data={"statement": "净化器已修复 repaired", "csrf_token": csrf},
                       files={"photos": ("fixed.jpg", photo, "image/jpeg")})
        assert r.status_code == 200 and 'id="done"' in r.text
        r = party.post(path, data={"statement": "again", "csrf_token": csrf})
        assert r.status_code == 409  # one answer per link
    with env.db.connection() as conn:
        (sub,) = review_store.submissions(conn, env.fume_case)
        assert sub.photos[0]["sha256"] == __import__("hashlib").sha256(photo).hexdigest()
    with TestClient(app) as officer:
        login(officer, "officer")
        page = officer.get(f"/cases/{env.fume_case}").text
        assert "净化器已修复" in page and "may be decided" in page
        r = officer.get(f"/cases/{env.fume_case}/photos/{sub.photos[0]['sha256']}")
        assert r.status_code == 200 and r.content == photo
    # decisions, the party's link and answer leave the cases verifiable end to end
    from rules.verify import verify
    report = verify(env.config.data_path, env.db)
    assert report.ok, report.problems


def test_expired_or_unknown_party_link_is_refused(app, env):
    with TestClient(app) as officer:
        login(officer, "officer")
        path = _notify(officer, env, env.fume_case).replace("http://testserver", "")
    with env.db.connection() as conn:
        conn.execute("UPDATE party_links SET expires_at = now() - interval '1 minute'")
        conn.commit()
    with TestClient(app) as party:
        assert party.get(path).status_code == 410
        assert party.get(path[:-3] + "abc").status_code == 404
        # the link of one case opens no other case's evidence
        assert party.get(f"{path}/evidence/{'0' * 64}").status_code in (404, 410)


def test_evidence_served_verified_and_immutable(app, env):
    from storage.evidence import EvidenceStore

    with TestClient(app) as client:
        login(client, "operator")
        r = client.get(f"/evidence/{env.frames[0]}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert "immutable" in r.headers["cache-control"]
        annotated = client.get(f"/evidence/{env.frames[0]}/annotated")
        assert annotated.status_code == 200 and annotated.content != r.content
        assert client.get(f"/evidence/{'a' * 64}").status_code == 404
        path = EvidenceStore(env.config.evidence_dir).path(env.frames[1])
        path.chmod(0o644)
        path.write_bytes(path.read_bytes()[:-1] + b"\x00")
        r = client.get(f"/evidence/{env.frames[1]}")
        assert r.status_code == 500 and "altered" in r.json()["detail"]
        login(client, "officer")
        r = client.get(f"/cases/{env.drone_case}/package.zip")
        assert r.status_code == 500 and "cannot export" in r.text, r.text[:300]


def test_case_page_shows_boxes_chart_devices_and_gate(app, env):
    with TestClient(app) as client:
        login(client, "officer")
        drone = client.get(f"/cases/{env.drone_case}").text
        assert drone.count('/annotated"') == 2 and "street_stall" in drone
        assert "0" * 12 in drone  # the weights hash of the model behind each detection
        assert "fit as evidence" in drone and "UAV-01" in drone
        fume = client.get(f"/cases/{env.fume_case}").text
        assert '<svg class="chart"' in fume and 'class="limit"' in fume
        assert fume.count('class="violating"') == 3  # three 10-minute means above 2.0
        assert "FM-00001" in fume and "valid" in fume
        assert "《大气污染防治法》" in fume
        data = client.get(f"/api/cases/{env.drone_case}").json()
        assert [d["class"] for d in data["frames"][0]["detections"]] == ["street_stall"] * 2


def test_queue_keyset_pages_cover_every_case_once(app, env):
    with env.db.connection() as conn:
        base = datetime(2026, 10, 1, tzinfo=UTC)
        for i in range(130):
            case_store.upsert_case(conn, case_store.CaseDraft(
                "fume.purifier_off", 1, f"M-{i % 40 + 1:05d}", base + timedelta(hours=i),
                base + timedelta(hours=i, minutes=20), "violation",
                ("general", "serious", "info")[i % 3], "purifier off", "", {}), "rule-engine")
        conn.commit()
    with TestClient(app) as client:
        login(client, "officer")
        for sort in ("oldest", "newest", "severity"):
            seen, after = [], ""
            while True:
                r = client.get("/api/cases", params={"sort": sort, "after": after}).json()
                seen += [c["case_id"] for c in r["cases"]]
                if not r["next"]:
                    break
                after = r["next"]
            assert len(seen) == len(set(seen)) == 132, sort
        only = client.get("/api/cases", params={"rule": "drone.street_vending"}).json()
        assert [c["case_id"] for c in only["cases"]] == [env.drone_case]
        r = client.get("/api/cases", params={"since": "2026-11-20", "until": "2026-11-20"})
        assert {c["case_id"] for c in r.json()["cases"]} == {env.drone_case, env.fume_case}
        assert client.get("/api/cases", params={"after": "garbage"}).status_code == 400
        assert client.get("/cases", params={"status": "flagged", "area": "AR-01"}).status_code == 200


def test_evidence_package_verifies_and_reports_a_changed_byte(app, env):
    with TestClient(app) as client:
        login(client, "officer")
        data = client.get(f"/cases/{env.drone_case}/package.zip").content
    assert verify_package(data) == []
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert f"frames/{env.frames[0]}.jpg" in names and f"annotated/{env.frames[0]}.jpg" in names
    assert {"manifest.json", "audit.json", "case.json", "report.html"} <= set(names)
    # change one byte inside the first frame's stored bytes
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(f"frames/{env.frames[0]}.jpg")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 500
    bad = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
    problems = verify_package(bad)
    assert problems and all(f"frames/{env.frames[0]}.jpg" in p for p in problems), problems


def test_api_token_reads_without_cookies(app, env):
    with TestClient(app) as client:
        login(client, "operator")
        page = client.post("/account/tokens", data={"label": "city platform",
                                                    "csrf_token": client.cookies.get("cw_csrf")})
        token = page.text.split('id="new-token" readonly value="')[1].split('"')[0]
    with TestClient(app) as api:
        assert api.get("/api/cases").status_code == 401
        r = api.get("/api/cases", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and len(r.json()["cases"]) == 2
        r = api.get("/api/cockpit", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["open_by_status"] == {"flagged": 2}
        r = api.post(f"/api/cases/{env.fume_case}/decision", json={"action": "confirm",
                     "reason": "x"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403  # an operator's token cannot decide


def test_officer_adds_a_photo_taken_on_the_spot(app, env):
    photo = scene_jpeg(7, [(100, 100, 300, 300)])
    with TestClient(app) as client:
        login(client, "officer")
        csrf = client.cookies.get("cw_csrf")
        r = client.post(f"/cases/{env.drone_case}/photos", data={"note": "", "csrf_token": csrf},
                        files={"photo": ("spot.jpg", photo, "image/jpeg")})
        assert r.status_code == 422 and "note" in r.text
        r = client.post(f"/cases/{env.drone_case}/photos", data={
            "note": "stall still there", "csrf_token": csrf},
            files={"photo": ("spot.jpg", b"GIF89a" + b"0" * 100, "image/jpeg")})
        assert r.status_code == 415 and "not a JPEG or PNG" in r.text
        r = client.post(f"/cases/{env.drone_case}/photos", data={
            "note": "stall still there at 10:40", "csrf_token": csrf},
            files={"photo": ("spot.jpg", photo, "image/jpeg")})
        assert r.status_code == 200 and "stall still there at 10:40" in r.text
        sha = __import__("hashlib").sha256(photo).hexdigest()
        assert client.get(f"/cases/{env.drone_case}/photos/{sha}").content == photo
        assert client.get(f"/cases/{env.fume_case}/photos/{sha}").status_code == 404
        data = client.get(f"/cases/{env.drone_case}/package.zip").content
    assert f"photos/{sha}.jpg" in zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert verify_package(data) == []
    with env.db.connection() as conn:
        assert audit.entries(conn, "case", str(env.drone_case))[-1].action == "field_photo_added"
