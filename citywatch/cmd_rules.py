"""`citywatch rules|cases|credit|inspections|trends`: the rule engine's commands."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from citywatch import app
from citywatch.cmd_review import register_case_export
from citywatch.console import emit, load_config, parse_time, time_arg
from detectors.base import DetectorError
from rules.credit import code_at, refresh
from rules.engine import EngineBusy, evaluate, load_rules
from rules.ruleset import RuleSetError
from rules.verify import verify
from storage import audit
from storage import cases as case_store
from storage import credit as credit_store


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
    p = sub.add_parser("rules", help="rule engine: check rule files, evaluate")
    rsub = p.add_subparsers(dest="action", required=True)
    a = rsub.add_parser("check", help="load and check the rule files (errors name file and path)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=rules_check)
    a = rsub.add_parser("run", help="evaluate the rules once over stored data")
    a.add_argument("--since", type=time_arg, help="event time to start from (ISO 8601; local time if no offset)")
    a.add_argument("--until", type=time_arg, help="event time to stop at (default: after the latest data)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=rules_run)

    p = sub.add_parser("cases", help="enforcement cases")
    csub = p.add_subparsers(dest="action", required=True)
    a = csub.add_parser("list", help="cases (fused-in parts hidden unless --all)")
    a.add_argument("--status")
    a.add_argument("--rule")
    a.add_argument("--subject")
    a.add_argument("--all", action="store_true", help="include cases fused into others")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cases_list)
    a = csub.add_parser("show", help="one case with its evidence and history")
    a.add_argument("case_id", type=int)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cases_show)
    a = csub.add_parser("verify", help="recompute every evidence hash and the audit chain, "
                        "rebuild each case from the log, check the anchored chain heads")
    a.add_argument("--checkpoint", action="append", default=[], metavar="SEQ:HASH",
                   help="a chain head kept from `cases checkpoint` (repeatable)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cases_verify)
    a = csub.add_parser("checkpoint", help="print the audit chain's head (SEQ:HASH) to keep "
                        "outside the system and check later with `cases verify --checkpoint`")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cases_checkpoint)
    a = csub.add_parser("transition", help="move a case along its workflow")
    a.add_argument("case_id", type=int)
    a.add_argument("status", choices=case_store.STATUSES)
    a.add_argument("--actor", required=True, help="who makes the change")
    a.add_argument("--reason", required=True, help="why")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cases_transition)
    register_case_export(csub)

    p = sub.add_parser("credit", help="merchant and site credit codes (红黄绿码)")
    ksub = p.add_subparsers(dest="action", required=True)
    a = ksub.add_parser("show", help="one subject's code and history")
    a.add_argument("subject")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=credit_show)
    a = ksub.add_parser("list", help="subjects by code (after recomputing)")
    a.add_argument("--code", choices=("red", "yellow", "green"))
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=credit_list)

    p = sub.add_parser("inspections", help="open cases grouped per subject (综合查一次)")
    p.add_argument("--subject")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=inspections_list)

    p = sub.add_parser("trends", help="case counts by week, rule and area")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=trends_list)


def rules_check(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        classes = app.detection_classes(cfg)
    except DetectorError as exc:
        print(f"cannot check detection classes: detectors.backend: {exc}", file=sys.stderr)
        return 2
    try:
        rs = load_rules(cfg.rules, classes)
    except RuleSetError as exc:
        print("rule errors:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    rows = [{"id": r.id, "version": r.version, "kind": r.kind, "subject_type": r.subject_type,
             "case_kind": r.case_kind, "severity": r.severity} for r in rs.rules]
    emit(rows, args.json, f"{len(rows)} rules OK (profile {rs.profile}):\n" + "\n".join(
        f"  {r['id']:<28} v{r['version']} {r['kind']:<10} {r['subject_type']:<9} {r['case_kind']}"
        for r in rows))
    return 0


def rules_run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    db = app.open_database(cfg)
    try:
        result = evaluate(cfg.rules, db, since=parse_time(args.since, cfg.rules.timezone),
                          until=parse_time(args.until, cfg.rules.timezone))
    except RuleSetError as exc:
        print("rule errors:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return 2
    except EngineBusy as exc:
        print(str(exc), file=sys.stderr)
        return 3
    finally:
        db.close()
    d = result.as_dict()
    emit(d, args.json, f"{d['episodes']} episodes: {d['created']} new cases, {d['extended']} "
         f"extended, {d['revised']} revised, {d['unchanged']} unchanged, {d['fused']} fused "
         f"(evaluate {d['evaluate_s']}s, record {d['record_s']}s)")
    return 0


def cases_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    tz = ZoneInfo(cfg.rules.timezone)
    with app.open_database(cfg) as db, db.connection() as conn:
        cases = case_store.list_cases(conn, status=args.status, rule_id=args.rule,
                                      subject_id=args.subject, include_fused=args.all)
    emit([c.as_dict() for c in cases], args.json, "\n".join(
        f"#{c.case_id:<5} {c.rule_id:<28} {c.subject_id:<9} "
        f"{c.episode_start.astimezone(tz):%Y-%m-%d %H:%M}-{c.episode_end.astimezone(tz):%H:%M} "
        f"{c.status:<12} {c.evidence_state}" for c in cases) or "no cases")
    return 0


def cases_show(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        try:
            d = case_store.get_case(conn, args.case_id)
        except case_store.CaseNotFound as exc:
            print(str(exc), file=sys.stderr)
            return 1
    data = d.case.as_dict() | {
        "evidence": [{"kind": e.kind, "ref": e.ref, "sha256": e.sha256, "meta": e.meta}
                     for e in d.evidence],
        "transitions": [{"from": t.from_status, "to": t.to_status, "actor": t.actor,
                         "reason": t.reason, "at": t.at} for t in d.transitions],
        "fused": d.fused}
    c = d.case
    tz = ZoneInfo(cfg.rules.timezone)
    text = [f"case #{c.case_id} {c.title}", f"  rule {c.rule_id} v{c.rule_version} "
            f"({c.kind}, {c.severity}); basis: {c.legal_basis}",
            f"  subject {c.subject_id} ({c.area_id}); {c.episode_start.astimezone(tz):%Y-%m-%d %H:%M:%S} "
            f".. {c.episode_end.astimezone(tz):%Y-%m-%d %H:%M:%S} ({cfg.rules.timezone})",
            f"  status {c.status}; evidence {c.evidence_state}"
            + "".join(f"\n    missing: {m}" for m in c.evidence_missing),
            f"  summary {c.summary}"]
    text += [f"  evidence {e.kind:<6} {e.sha256[:16]}… {e.ref[:60]}" for e in d.evidence]
    text += [f"  {t.at.astimezone(tz):%Y-%m-%d %H:%M} {t.from_status} -> {t.to_status} by {t.actor}: {t.reason}"
             for t in d.transitions]
    if d.fused:
        text.append(f"  fused cases: {d.fused}")
    emit(data, args.json, "\n".join(text))
    return 0


def cases_verify(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        checkpoints = [audit.parse_checkpoint(c) for c in args.checkpoint]
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    with app.open_database(cfg) as db:
        report = verify(cfg.data_path, db, checkpoints)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    emit({"ok": report.ok, "cases": report.cases, "evidence": report.evidence,
          "audit_entries": report.audit_entries, "anchored_heads": report.anchored,
          "problems": report.problems, "warnings": report.warnings}, args.json,
         (f"verified {report.cases} cases, {report.evidence} evidence items, "
          f"{report.audit_entries} audit entries, {report.anchored} anchored heads: ")
         + ("all match" if report.ok else f"{len(report.problems)} problems\n  "
            + "\n  ".join(report.problems)))
    return 0 if report.ok else 1


def cases_checkpoint(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        point = audit.head(conn)
    if point is None:
        print("the audit log is empty: nothing to keep yet", file=sys.stderr)
        return 1
    emit({"seq": point.seq, "hash": point.hash, "at": point.at, "checkpoint": str(point)},
         args.json, str(point))
    return 0


def cases_transition(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        try:
            t = case_store.transition(conn, args.case_id, args.status, args.actor, args.reason)
        except (case_store.InvalidTransition, case_store.CaseNotFound) as exc:
            print(str(exc), file=sys.stderr)
            return 1
    emit({"case_id": t.case_id, "from": t.from_status, "to": t.to_status, "at": t.at},
         args.json, f"case {t.case_id}: {t.from_status} -> {t.to_status}")
    return 0


def credit_show(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        refresh(conn, cfg.rules.credit)
        conn.commit()
        now = code_at(credit_store.violations(conn, args.subject), datetime.now().astimezone(),
                      cfg.rules.credit)
        hist = credit_store.history(conn, args.subject)
    emit({"subject_id": args.subject, "code": now.code, "since": now.since, "reason": now.reason,
          "history": [{"code": h.code, "since": h.since, "reason": h.reason} for h in hist]},
         args.json, f"{args.subject}: {now.code} ({now.reason})" + "".join(
             f"\n  {h.since:%Y-%m-%d} {h.code:<6} {h.reason}" for h in hist))
    return 0


def credit_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        refresh(conn, cfg.rules.credit)
        conn.commit()
        records = credit_store.current(conn, code=args.code)
    emit([{"subject_id": r.subject_id, "code": r.code, "since": r.since, "reason": r.reason}
          for r in records], args.json, "\n".join(
        f"{r.subject_id:<9} {r.code:<6} since {r.since:%Y-%m-%d}  {r.reason}" for r in records)
        or "no subjects with that code on record (subjects without history are green)")
    return 0


def inspections_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        tasks = case_store.inspection_tasks(conn, args.subject)
    emit([{"subject_id": t.subject_id, "name": t.subject_name, "kind": t.subject_kind,
           "area_id": t.area_id, "case_ids": t.case_ids, "rules": t.rule_ids,
           "departments": t.departments, "first_seen": t.first_seen, "last_seen": t.last_seen}
          for t in tasks], args.json, "\n".join(
        f"{t.subject_id:<9} {t.subject_name} ({t.area_id}): cases {list(t.case_ids)} "
        f"[{', '.join(t.rule_ids)}]" for t in tasks) or "no open cases")
    return 0


def trends_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        rows = case_store.trends(conn, cfg.rules.timezone)
    emit([{"week": w, "rule_id": r, "area_id": a, "cases": n} for w, r, a, n in rows], args.json,
         "\n".join(f"{w} {r:<28} {a or '-':<6} {n}" for w, r, a, n in rows) or "no cases")
    return 0
