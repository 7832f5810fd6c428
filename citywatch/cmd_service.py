"""`citywatch run` (the long-running service) and `citywatch demo`."""

from __future__ import annotations

import argparse
import sys

from citywatch import service
from citywatch.console import emit, load_config
from detectors.base import DetectorError
from rules.ruleset import RuleSetError


def register(sub) -> None:
    p = sub.add_parser("run", help="run collectors, detector workers and the rule engine "
                                   "until SIGTERM / Ctrl-C")
    p.add_argument("--only", action="append", choices=service.STAGES,
                   help="run only this stage (repeatable); default all")
    p.add_argument("--with-web", action="store_true",
                   help="serve the review app beside the pipeline (web.host, web.port)")
    p.set_defaults(func=run)

    p = sub.add_parser("demo", help="the whole pipeline on simulated devices, nothing to set up")
    p.add_argument("--seconds", type=float, default=300.0,
                   help="longest wait, once everything is published, for the pipeline to "
                   "drain (default 300); what is still waiting then is left out and said so")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=demo)


def run(args: argparse.Namespace) -> int:
    try:
        return service.run(load_config(args), tuple(args.only or service.STAGES),
                           args.with_web)
    except RuleSetError as exc:
        print("rule errors:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return 2
    except DetectorError as exc:
        print(f"detectors.backend: {exc}", file=sys.stderr)
        return 2


def demo(args: argparse.Namespace) -> int:
    from citywatch.demo import format_demo, run_demo
    from rules.summary import format_summary

    summary = run_demo(load_config(args), args.seconds)
    emit(summary, args.json, format_demo(summary, format_summary))
    # running out of --seconds is said in the summary ("cut"); only errors fail the demo
    return 1 if summary["errors"] else 0
