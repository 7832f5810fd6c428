"""The operators' JSON API, mounted in an app as the review app mounts it, driven in-process."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from flights import api
from tests.flights.conftest import context, registry_with

OPERATORS = {"li": "operator:li"}


def viewer(x_user: str = Header("")) -> str:
    if not x_user:
        raise HTTPException(401, "sign in")
    return x_user


def operator(x_user: str = Header("")) -> str:
    if x_user not in OPERATORS:
        raise HTTPException(403, "operators only")
    return OPERATORS[x_user]


@pytest.fixture
def client_and_ctx(db, flight_cfg):
    ctx = context(flight_cfg, registry_with())
    app = FastAPI()
    app.include_router(api.router(db, ctx, viewer=viewer, operator=operator), prefix="/api")
    return TestClient(app), ctx


def test_plan_check_and_refusals(client_and_ctx):
    client, _ = client_and_ctx
    as_li = {"X-User": "li"}
    r = client.post("/api/flights/plan", json={"subject": "S-001"}, headers=as_li)
    assert r.status_code == 200 and r.json()["ok"] and r.json()["qgc"]["fileType"] == "Plan"
    r = client.post("/api/flights/plan", json={"street": "ST-004", "alt_m": 130}, headers=as_li)
    assert not r.json()["ok"]
    assert [p["code"] for p in r.json()["problems"]] == ["altitude"]
    assert client.post("/api/flights/plan", json={"subject": "S-001", "street": "ST-004"},
                       headers=as_li).status_code == 422
    assert client.post("/api/flights/plan", json={"subject": "S-999"}, headers=as_li).json()[
        "detail"] == "no subject 'S-999' in the registry"
    bad = client.post("/api/flights/plan", json={"subject": "S-001"}, headers=as_li).json()["qgc"]
    bad["mission"]["items"][2]["params"][4] = 95.0
    r = client.post("/api/flights/check", json={"plan": bad}, headers=as_li)
    assert r.status_code == 422 and "mission.items[2].params[4]: latitude 95.0" in r.json()["detail"]
    assert client.post("/api/flights/plan", json={"subject": "S-001"},
                       headers={"X-User": "zhang"}).status_code == 403
    assert client.get("/api/flights/sorties").status_code == 401


@pytest.mark.slow
def test_fly_watch_and_prove_coverage_through_the_api(client_and_ctx, vehicles):
    client, ctx = client_and_ctx
    as_li = {"X-User": "li"}
    vehicles.start(ctx.registry)
    qgc_doc = client.post("/api/flights/plan", json={"street": "ST-010", "drone": "UAV-03",
                                                      "alt_m": 40}, headers=as_li).json()["qgc"]
    r = client.post("/api/flights/sorties", json={"plan": qgc_doc}, headers=as_li)
    assert r.status_code == 202
    sortie_id = r.json()["sortie_id"]
    deadline = time.monotonic() + 60
    while (s := client.get(f"/api/flights/sorties/{sortie_id}", headers=as_li).json())["status"] not in (
            "landed", "failed", "aborted", "refused") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s["status"] == "landed", s["reason"]
    assert [e["status"] for e in s["events"]] == ["planned", "uploaded", "airborne", "returning", "landed"]
    assert s["requested_by"] == "operator:li"
    t = client.get(f"/api/flights/sorties/{sortie_id}/track", headers=as_li).json()
    assert len(t["track"]) > 5 and max(t["off_route_m"]) < 12.0
    assert client.post(f"/api/flights/sorties/{sortie_id}/abort", json={}, headers=as_li).status_code == 409
    assert client.post(f"/api/flights/sorties/{sortie_id}/approve", headers=as_li).status_code == 409
    assert client.post("/api/flights/sorties/9999/abort", json={}, headers=as_li).status_code == 404
    listed = client.get("/api/flights/sorties", headers=as_li).json()
    assert [x["sortie_id"] for x in listed] == [sortie_id]
    cov = client.get(f"/api/flights/coverage?sortie={sortie_id}", headers=as_li).json()
    # no frames reached the pipeline (the vehicle has no broker here): nothing is proven
    assert cov["sorties"][0]["covered"] == [] and cov["sorties"][0]["missed"]
