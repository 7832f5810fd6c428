"""`citywatch serve|users|evidence` and `cases export`: the review app's commands."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from citywatch import app
from citywatch.console import emit, load_config
from review.security import hash_password
from storage import review as review_store
from storage.errors import StorageError


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
    p = sub.add_parser("serve", help="the officers' review app and the district cockpit")
    p.add_argument("--host", help="address to listen on (default web.host)")
    p.add_argument("--port", type=int, help="port (default web.port)")
    p.add_argument("--insecure-cookies", action="store_true",
                   help="session cookie without the Secure flag (plain HTTP on this machine)")
    p.add_argument("--demo", action="store_true",
                   help="serve the data `citywatch demo` left (its embedded database)")
    p.set_defaults(func=serve)

    p = sub.add_parser("users", help="review app users (officer, supervisor, operator, admin)")
    usub = p.add_subparsers(dest="action", required=True)
    a = usub.add_parser("add", help="add a user; the password is asked for (or "
                                    "CITYWATCH_PASSWORD)")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=review_store.ROLES)
    a.add_argument("--name", default="", help="display name")
    a.set_defaults(func=users_add)
    a = usub.add_parser("list", help="users with role and state")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=users_list)
    a = usub.add_parser("disable", help="disable a user (ends their sessions)")
    a.add_argument("username")
    a.set_defaults(func=users_disable)
    a = usub.add_parser("passwd", help="set a user's password (ends their sessions)")
    a.add_argument("username")
    a.set_defaults(func=users_passwd)

    p = sub.add_parser("evidence", help="evidence packages")
    esub = p.add_subparsers(dest="action", required=True)
    a = esub.add_parser("verify", help="check an evidence package offline")
    a.add_argument("file")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=evidence_verify)


def register_case_export(csub) -> None:
    """`citywatch cases export N --out FILE.zip` (added to the `cases` command)."""
    a = csub.add_parser("export", help="a case's evidence package (ZIP with manifest)")
    a.add_argument("case_id", type=int)
    a.add_argument("--out", required=True, help="ZIP file to write")
    a.set_defaults(func=cases_export)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from review.app import create_app

    cfg = load_config(args)
    if args.insecure_cookies:
        cfg.web.secure_cookies = False
    if args.demo:
        # the demo leaves its data in the embedded server's default database under
        # <data_dir>/demo (citywatch/demo.py)
        cfg.data_dir = str(cfg.data_path / "demo")
        cfg.database.url = None
    db = app.open_database(cfg, name="citywatch-review")
    try:
        host, port = args.host or cfg.web.host, args.port or cfg.web.port
        print(f"citywatch review app on http://{host}:{port}/", file=sys.stderr)
        uvicorn.run(create_app(app.review_context(cfg, db)), host=host, port=port,
                    log_level="info", proxy_headers=False)
    finally:
        db.close()
    return 0


def _password(prompt: str) -> str:
    if os.environ.get("CITYWATCH_PASSWORD"):
        return os.environ["CITYWATCH_PASSWORD"]
    first = getpass.getpass(prompt)
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def users_add(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        hashed = hash_password(_password(f"password for {args.username}: "))
        with app.open_database(cfg) as db, db.connection() as conn:
            review_store.add_user(conn, args.username, args.role, hashed, args.name)
    except (ValueError, StorageError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"added {args.username} ({args.role})", file=sys.stderr)
    return 0


def users_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with app.open_database(cfg) as db, db.connection() as conn:
        users = review_store.users(conn)
    emit([{"username": u.username, "role": u.role, "disabled": u.disabled,
           "created_at": u.created_at} for u in users], args.json, "\n".join(
        f"{u.username:<20} {u.role:<10} {'disabled' if u.disabled else 'active'}"
        for u in users) or "no users (add the first admin with `citywatch users add NAME "
                            "--role admin`)")
    return 0


def users_disable(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        with app.open_database(cfg) as db, db.connection() as conn:
            review_store.set_disabled(conn, args.username, True)
    except StorageError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def users_passwd(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    try:
        hashed = hash_password(_password(f"new password for {args.username}: "))
        with app.open_database(cfg) as db, db.connection() as conn:
            review_store.set_password(conn, args.username, hashed)
    except (ValueError, StorageError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def cases_export(args: argparse.Namespace) -> int:
    from fastapi import HTTPException

    from review.app import export_package

    cfg = load_config(args)
    with app.open_database(cfg) as db:
        try:
            data = export_package(app.review_context(cfg, db), args.case_id)
        except HTTPException as exc:
            print(exc.detail, file=sys.stderr)
            return 1
        except StorageError as exc:
            print(f"cannot export case {args.case_id}: {exc}", file=sys.stderr)
            return 1
    Path(args.out).write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes)", file=sys.stderr)
    return 0


def evidence_verify(args: argparse.Namespace) -> int:
    from review.package import verify_package

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    problems = verify_package(data)
    emit({"file": args.file, "ok": not problems, "problems": problems}, args.json,
         f"{args.file}: every file matches its manifest and hash" if not problems else
         f"{args.file}: {len(problems)} problems\n  " + "\n  ".join(problems))
    return 0 if not problems else 1
