"""Benchmark: the review app's pages over 100,000 cases and 1,000,000 detections.

A database is filled once (kept under a name, so re-runs skip it) with set-based INSERTs:
frames with four detections each, cases spread over a year, 1,649 subjects, rules,
statuses, severities and areas, two frames of evidence per case, a series snapshot of 40
readings on every fourth fume case, three audit entries per case, and 20 real JPEG frames
(with their detections) attached to the first cases so that drawing boxes is timed on
real images. Each page is then requested in-process (FastAPI's TestClient, no network):
the time is the server's, plus the test transport, which the first row (the sign-in page,
a template and no query) shows as the floor everything else stands on.

    python -m bench.review [--cases 100000 --detections 1000000] [--requests 50] [--json]

Pages, in one run: sign-in page (floor); queue first page; queue half-way through by
cursor; queue filtered by status and area, sorted by severity; queue over one week; a
case page; its JSON twin; one annotated frame; the cockpit (map of every subject).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from citywatch import app as wiring
from citywatch import config as config_mod
from citywatch.app import review_context
from review.security import hash_password
from storage import review as review_store
from storage.db import Database
from storage.evidence import EvidenceStore

DATA_DB = "citywatch_bench_review"
START = datetime(2025, 12, 1, tzinfo=UTC)
RULES = ["fume.exceedance", "fume.purifier_off", "drone.street_vending", "dust.pm10_hourly_case",
         "cone.fallen_not_restored", "drone.bare_soil_uncovered"]
STATUSES = ["flagged"] * 5 + ["under_review", "confirmed", "dismissed", "notified", "closed"]
PASSWORD = "bench password only"

# The generator writes bench data straight into the tables with set-based SQL (the
# storage functions write one case at a time with its audit entry, ~100x slower); it
# keeps every constraint and index the app relies on.
GENERATE = [
    """INSERT INTO frames (sha256, ts, received_at, source_kind, source_id, width, height, bytes,
        sharpness, brightness, clipped, fit_as_evidence, status, processed_at)
       SELECT md5('f' || i) || md5('g' || i), %(start)s + i * interval '7 seconds',
              %(start)s + i * interval '7 seconds', 'drone', 'UAV-' || lpad((1 + i %% 20)::text, 2, '0'),
              640, 480, 60000, 150 + i %% 50, 120, 0, true, 'done', now()
       FROM generate_series(0, %(frames)s - 1) i""",
    """INSERT INTO detections (frame_sha256, frame_ts, det_index, source_kind, source_id, class_id,
        class_name, confidence, x1, y1, x2, y2, zone_kind, fit_as_evidence, model_name,
        model_version, weights_sha256)
       SELECT md5('f' || f) || md5('g' || f), %(start)s + f * interval '7 seconds', d, 'drone',
              'UAV-' || lpad((1 + f %% 20)::text, 2, '0'), 0, 'street_stall', 0.5 + (f %% 50) / 100.0,
              40 + d * 140, 200, 150 + d * 140, 330, 'frontage', true, 'bench', '1', repeat('ab', 32)
       FROM generate_series(0, %(frames)s - 1) f, generate_series(0, 3) d""",
    """INSERT INTO cases (rule_id, rule_version, subject_id, episode_start, episode_end, kind,
        severity, title, legal_basis, status, evidence_state, evidence_missing, summary)
       SELECT (%(rules)s::text[])[1 + i %% %(nrules)s], 1,
              (%(subjects)s::text[])[1 + (i * 7919) %% %(nsubjects)s],
              %(start)s + i * interval '5 minutes', %(start)s + i * interval '5 minutes' + interval '25 minutes',
              'violation', (ARRAY['general', 'serious', 'info'])[1 + (i / 7) %% 3], 'bench case',
              'bench legal basis', (%(statuses)s::text[])[1 + (i / 3) %% %(nstatuses)s],
              CASE WHEN i %% 9 = 0 THEN 'incomplete' ELSE 'ready' END,
              CASE WHEN i %% 9 = 0 THEN '["no frame fit as evidence"]'::jsonb ELSE '[]'::jsonb END,
              jsonb_build_object('windows', 3, 'limit', 2.0, 'metric', 'fume_mg_m3')
       FROM generate_series(0, %(cases)s - 1) i""",
    """INSERT INTO case_evidence (case_id, kind, ref, sha256, content, meta)
       SELECT c.case_id, 'frame', md5('f' || ((c.case_id * 2 + k) %% %(frames)s))
              || md5('g' || ((c.case_id * 2 + k) %% %(frames)s)),
              md5('f' || ((c.case_id * 2 + k) %% %(frames)s)) || md5('g' || ((c.case_id * 2 + k) %% %(frames)s)),
              NULL, jsonb_build_object('source_id', 'UAV-01', 'class', 'street_stall',
                'confidence', 0.9, 'fit_as_evidence', true, 'ts', to_char(
                  (%(start)s + ((c.case_id * 2 + k) %% %(frames)s) * interval '7 seconds')
                  AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'))
       FROM cases c, generate_series(0, 1) k""",
    """INSERT INTO case_evidence (case_id, kind, ref, sha256, content, meta)
       SELECT c.case_id, 'series', 'FM-00001@' || c.case_id, md5('s' || c.case_id) || md5('t' || c.case_id),
              jsonb_build_object('device_id', 'FM-00001', 'fields', '["ts", "fume_mg_m3"]'::jsonb,
                'from', c.episode_start, 'until', c.episode_end,
                'rows', (SELECT jsonb_agg(jsonb_build_array(
                           to_char((c.episode_start + m * interval '1 minute') AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'), 1.5 + (m %% 9) / 5.0))
                         FROM generate_series(0, 39) m)),
              jsonb_build_object('device_id', 'FM-00001', 'rows', 40)
       FROM cases c WHERE c.rule_id = 'fume.exceedance' AND (c.case_id / 6) %% 4 = 0""",
    """INSERT INTO audit_log (seq, at, actor, action, entity, entity_id, data, prev_hash, hash)
       SELECT nextval(pg_get_serial_sequence('audit_log', 'seq')), c.created_at, 'rule-engine', a,
              'case', c.case_id::text,
              CASE a WHEN 'evidence_added' THEN jsonb_build_object('kind', 'frame', 'sha256', repeat('ab', 32))
                     WHEN 'evidence_state' THEN jsonb_build_object('state', 'ready', 'missing', '[]'::jsonb)
                     ELSE '{}'::jsonb END, repeat('0', 64), md5(a || c.case_id) || md5(c.case_id || a)
       FROM cases c, unnest(ARRAY['case_created', 'evidence_added', 'evidence_state']) a""",
]


def _url(admin: str, name: str) -> str:
    return admin.rpartition("/")[0] + "/" + name


def _jpeg(seed: int) -> bytes:
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    img = rng.integers(60, 200, (480, 640, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])[1].tobytes()


def generate(cfg, db: Database, cases: int, detections: int) -> dict:
    """Fill an empty, migrated database; returns row counts."""
    frames = max(detections // 4, 1)
    t0 = time.monotonic()
    with db.connection() as conn:
        subjects = [r[0] for r in conn.execute(
            "SELECT subject_id FROM subjects WHERE kind IN ('merchant', 'site') ORDER BY 1")]
        params = {"start": START, "frames": frames, "cases": cases, "rules": RULES,
                  "nrules": len(RULES), "subjects": subjects, "nsubjects": len(subjects),
                  "statuses": STATUSES, "nstatuses": len(STATUSES)}
        for statement in GENERATE:
            conn.execute(statement, params)
        conn.commit()
        from domain.records import Detection
        from storage import frames as frame_store
        from storage.frames import Frame, ModelInfo

        store = EvidenceStore(cfg.evidence_dir)
        for i in range(20):
            sha = store.put(_jpeg(i))
            ts = START + timedelta(minutes=5 * (i + 1), seconds=1)
            frame_store.insert_frames(conn, [Frame(sha, ts, ts, "drone", "UAV-01", 640, 480, 1,
                                                   fit_as_evidence=True)])
            conn.commit()
            (claimed,) = [c for c in frame_store.claim(conn, "bench", 100) if c.frame.sha256 == sha]
            frame_store.complete(conn, claimed, [
                Detection(0, "street_stall", 0.8, 40 + 140 * d, 200, 150 + 140 * d, 330)
                for d in range(4)], ModelInfo("bench", "1", "ab" * 32))
            conn.execute("INSERT INTO case_evidence (case_id, kind, ref, sha256, meta) VALUES "
                         "(%s, 'frame', %s, %s, %s)",
                         (i + 1, sha, sha, json.dumps({"ts": ts.isoformat()})))
            conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("cases", "detections", "frames", "case_evidence", "audit_log")}
    return counts | {"generate_s": round(time.monotonic() - t0, 1)}


def measure(client, name: str, paths: list[str]) -> dict:
    times = []
    for path in paths:
        t = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{name}: {path} answered {r.status_code}: {r.text[:300]}")
    times.sort()
    return {"page": name, "n": len(times), "p50_ms": round(statistics.median(times), 1),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
            "max_ms": round(times[-1], 1)}


def run(cfg, db: Database, cases: int, requests: int) -> list[dict]:
    from fastapi.testclient import TestClient

    from review.app import create_app

    cfg.web.secure_cookies = False
    cfg.web.login_max_failures = 10_000
    with db.connection() as conn:
        if not any(u.username == "bench" for u in review_store.users(conn)):
            review_store.add_user(conn, "bench", "officer", hash_password(PASSWORD))
        cursor_row = conn.execute(
            "SELECT episode_start, case_id FROM cases WHERE fused_into IS NULL "
            "ORDER BY episode_start, case_id OFFSET %s LIMIT 1", (cases // 2,)).fetchone()
        real = [r[0] for r in conn.execute(
            "SELECT ref FROM case_evidence e JOIN frames f ON f.sha256 = e.ref "
            "WHERE e.kind = 'frame' AND f.bytes = 1 ORDER BY e.id LIMIT 20")]
        fume = [r[0] for r in conn.execute(
            "SELECT case_id FROM case_evidence WHERE kind = 'series' ORDER BY case_id LIMIT 500")]
    rng = random.Random(5)
    app = create_app(review_context(cfg, db))
    results = []
    with TestClient(app) as client:
        client.get("/login")
        client.post("/login", data={"username": "bench", "password": PASSWORD,
                                    "csrf_token": client.cookies.get("cw_csrf")})
        half = review_store.encode_cursor(list(cursor_row))
        week = (START + timedelta(days=120)).date()
        case_ids = [rng.randint(1, cases) for _ in range(requests)]
        fume_ids = [rng.choice(fume) for _ in range(requests)] if fume else case_ids
        for name, paths in [
            ("sign-in page (floor)", ["/login"] * requests),
            ("queue, first page", ["/cases"] * requests),
            ("queue, half-way (cursor)", [f"/cases?after={half}"] * requests),
            ("queue, status + area, by severity",
             [f"/cases?status=flagged&area=AR-{1 + i % 18:02d}&sort=severity"
              for i in range(requests)]),
            ("queue, one week", [f"/cases?since={week}&until={week + timedelta(days=6)}"]
             * requests),
            ("case page (frames)", [f"/cases/{i}" for i in case_ids]),
            ("case page (series chart)", [f"/cases/{i}" for i in fume_ids]),
            ("case JSON", [f"/api/cases/{i}" for i in case_ids]),
            ("annotated frame", [f"/evidence/{real[i % len(real)]}/annotated"
                                 for i in range(requests)]),
            ("cockpit", ["/"] * max(3, requests // 5)),
        ]:
            client.get(paths[0])  # warm: templates compiled, plans cached
            results.append(measure(client, name, paths))
            print(f"{name:<36} p50 {results[-1]['p50_ms']:>7} ms  p99 {results[-1]['p99_ms']:>7} ms",
                  file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="administrative connection (the bench database is created there)")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50, help="requests per page")
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--data-dir", default="var/bench-review",
                        help="evidence store of the bench (its real frames)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    name = f"{DATA_DB}_{args.cases}_{args.detections}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and args.regenerate:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    cfg = config_mod.load(env={})
    cfg.database.url = _url(args.pg, name)
    cfg.data_dir = str(Path(args.data_dir).resolve())
    db = wiring.open_database(cfg, name="bench-review")
    try:
        with db.connection() as conn:
            empty = conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 0
        data = generate(cfg, db, args.cases, args.detections) if empty else {"reused": name}
        print(f"data: {data}", file=sys.stderr)
        results = run(cfg, db, args.cases, args.requests)
    finally:
        db.close()
    report = {"cases": args.cases, "detections": args.detections, "data": data,
              "loadavg": os.getloadavg(), "pages": results}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"load average {os.getloadavg()}")
        for r in results:
            print(f"| {r['page']} | {r['p50_ms']} | {r['p99_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
