"""Row counts per table and dead letters by reason, for `citywatch db stats`."""

from __future__ import annotations

import psycopg
from psycopg import sql

TABLES = ("subjects", "devices", "readings", "telemetry", "frames", "detections", "cases",
          "case_evidence", "audit_log", "dead_letters")


def collect(conn: psycopg.Connection) -> dict:
    tables = {}
    for t in TABLES:
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]:
            tables[t] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
    reasons = dict(conn.execute(
        "SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY 2 DESC").fetchall())
    return {"tables": tables, "dead_letters_by_reason": reasons}
