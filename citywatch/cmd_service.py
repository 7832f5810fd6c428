"""`citywatch run` (the long-running service) and `citywatch demo`."""

from __future__ import annotations

import argparse

from citywatch import service
from citywatch.console import emit, load_config


def register(sub) -> None:
    p = sub.add_parser("run", help="run collectors, detector workers and the rule engine "
                                   "until SIGTERM / Ctrl-C")
    p.add_argument("--only", action="append", choices=service.STAGES,
                   help="run only this stage (repeatable); default all")
    p.set_defaults(func=run)

    p = sub.add_parser("demo", help="the whole pipeline on simulated devices, nothing to set up")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="longest time to wait for the pipeline to drain (default 60)")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=demo)


def run(args: argparse.Namespace) -> int:
    return service.run(load_config(args), tuple(args.only or service.STAGES))


def demo(args: argparse.Namespace) -> int:
    from citywatch.demo import run_demo
    from rules.summary import format_summary

    summary = run_demo(load_config(args), args.seconds)
    emit(summary, args.json, format_demo(summary, format_summary))
    return 0 if summary["finished"] and not summary["errors"] else 1


def format_demo(s: dict, format_cases) -> str:
    pub, col = s["published"], s["collector"]
    lines = [
        f"citywatch demo — {s['seconds']} s"
        + ("" if s["finished"] else " (time ran out before the pipeline drained)"),
        "",
        f"published: {pub.get('sensor_messages', 0):,} sensor messages of the simulated day "
        f"{pub.get('scenario_day', '?')}, {pub.get('drone_frames', 0)} drone frames, "
        f"{pub.get('cone_frames', 0)} cone-camera frames",
        f"collector: received {col['received']:,}, stored {col['stored']:,}, "
        f"exact repeats {col['duplicates']:,}, dead letters {sum(col['dead_letters'].values()):,}",
        "rows: " + ", ".join(f"{t} {n:,}" for t, n in s["tables"].items()
                             if t not in ("subjects", "devices")),
    ]
    if s["dead_letters_by_reason"]:
        lines.append("dead letters by reason: " + ", ".join(
            f"{r} {n}" for r, n in s["dead_letters_by_reason"].items()))
    lines.append("frames: " + ", ".join(f"{k} {v}" for k, v in s["frames"].items()))
    if pub.get("sortie"):
        so = pub["sortie"]
        lines.append(f"drone sortie #{so['sortie_id']} by {so['drone']}: {so['status']}"
                     + (f" ({so['reason']})" if so["reason"] else "") + f", mission {so['mission_id']}")
    if pub.get("stalls_at"):
        lines.append("street stalls placed in front of: " + ", ".join(pub["stalls_at"]))
    lines += ["", format_cases(s)]
    for e in s["errors"]:
        lines.append(f"ERROR {e}")
    return "\n".join(lines)

