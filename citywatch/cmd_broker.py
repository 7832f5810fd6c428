"""`citywatch broker credentials|acl`: the files a production Mosquitto needs so that
devices prove who they are and publish only on their own topics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from citywatch.console import emit, load_config
from domain.registry import load as load_registry
from ingest import brokerauth
from ingest.brokerauth import Account
from ingest.errors import IngestError


def register(sub) -> None:
    """Add the broker sub-commands to the `citywatch` parser."""
    p = sub.add_parser("broker", help="broker accounts and ACL generated from the registry")
    bsub = p.add_subparsers(dest="action", required=True)
    a = bsub.add_parser(
        "credentials", help="add an account for every registered device and collector to a "
        "Mosquitto password file; print each new password once (only hashes are kept)")
    a.add_argument("--out", type=Path, help="password file (default <data dir>/broker/passwd)")
    a.add_argument("--collector", action="append", default=[], metavar="NAME",
                   help="collector account (repeatable; default mqtt.client_id); it is also "
                        "that collector's client id")
    a.add_argument("--rotate", action="store_true",
                   help="new passwords for every account, not only the new ones")
    a.add_argument("--prune", action="store_true",
                   help="remove accounts that are neither a registered device nor a --collector")
    a.add_argument("--json", action="store_true", help="the new passwords as JSON")
    a.set_defaults(func=credentials)
    a = bsub.add_parser("acl", help="write the ACL: each device publishes on its own topics "
                        "only, collectors read")
    a.add_argument("--out", type=Path, help="ACL file (default <data dir>/broker/acl)")
    a.add_argument("--collector", action="append", default=[], metavar="NAME")
    a.set_defaults(func=acl)


def _collectors(args, cfg) -> list[str]:
    return [brokerauth.check_username(c) for c in (args.collector or [cfg.mqtt.client_id])]


def credentials(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    out = args.out or cfg.data_path / "broker" / "passwd"
    devices = load_registry(cfg.resolve(cfg.registry.directory)).devices
    try:
        wanted = [Account(brokerauth.check_username(d.device_id), "device") for d in devices]
        wanted += [Account(c, "collector") for c in _collectors(args, cfg)]
    except IngestError as exc:
        raise SystemExit(str(exc)) from None
    hashes = {} if args.rotate else brokerauth.read_password_file(out)
    names = {a.username for a in wanted}
    others = sorted(set(hashes) - names)
    if others and args.prune:
        for user in others:
            del hashes[user]
        print(f"removed {len(others)} accounts: {', '.join(others)}", file=sys.stderr)
    elif others:
        print(f"{len(others)} accounts are neither registered devices nor named collectors "
              f"(--prune removes them): {', '.join(others[:20])}", file=sys.stderr)
    new = []
    for account in wanted:
        if account.username not in hashes:
            password = brokerauth.new_password()
            hashes[account.username] = brokerauth.password_hash(password)
            new.append({"username": account.username, "role": account.role,
                        "password": password})
    brokerauth.write_private(out, brokerauth.password_file_text(hashes))
    print(f"{out}: {len(hashes)} accounts, {len(new)} new (their passwords follow, shown "
          "this once; hand each to its device and keep none)", file=sys.stderr)
    emit(new, args.json, "\n".join(f"{n['username']}\t{n['role']}\t{n['password']}"
                                   for n in new))
    return 0


def acl(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    out = args.out or cfg.data_path / "broker" / "acl"
    try:
        collectors = [Account(c, "collector") for c in _collectors(args, cfg)]
    except IngestError as exc:
        raise SystemExit(str(exc)) from None
    brokerauth.write_private(out, brokerauth.acl_text(cfg.mqtt.topic_prefix, collectors))
    print(f"{out}: ACL for prefix {cfg.mqtt.topic_prefix}; mosquitto.conf needs:\n  "
          + "\n  ".join(brokerauth.mosquitto_auth_conf(out.with_name("passwd"), out)),
          file=sys.stderr)
    return 0
