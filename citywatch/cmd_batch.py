"""`citywatch batch run|status|schedule|report`: overnight runs over recorded footage."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from citywatch import app
from citywatch.console import emit, load_config
from citywatch.service import stop_on_signals

log = logging.getLogger(__name__)


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
    p = sub.add_parser("batch", help="overnight runs over recorded footage, morning reports")
    bsub = p.add_subparsers(dest="batch_command", required=True, metavar="SUBCOMMAND")

    r = bsub.add_parser("run", help="process video files, SRT sidecars, photo folders")
    r.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="files or folders (none: help finish what other runs left pending)")
    who = r.add_mutually_exclusive_group()
    who.add_argument("--drone", metavar="ID", help="the drone that recorded the footage")
    who.add_argument("--camera", metavar="ID", help="the fixed camera that recorded it")
    r.add_argument("--start", type=datetime.fromisoformat, metavar="TIME",
                   help="camera recordings: wall-clock time of the first frame (ISO 8601 with "
                   "offset; default the file's creation_time)")
    r.add_argument("--fps", type=float, help="frames sampled per second (default batch.sample_fps)")
    r.add_argument("--samplers", type=int, default=1, help="decoding threads (files in parallel)")
    r.add_argument("-n", "--workers", type=int, help="detector threads (default detectors.workers)")
    r.add_argument("--weights", help="model weights (.pt or .onnx)")
    r.add_argument("--no-rules", action="store_true", help="do not evaluate rules afterwards")
    r.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    r.set_defaults(func=run)

    st = bsub.add_parser("status", help="recent runs and how far they are")
    st.add_argument("--limit", type=int, default=10)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=status)

    s = bsub.add_parser("schedule", help="sweep the drop folder on the batch.schedule cron")
    s.add_argument("--once", action="store_true", help="sweep now, once, and exit (for timers)")
    s.add_argument("-n", "--workers", type=int, help="detector threads (default detectors.workers)")
    s.set_defaults(func=schedule)

    m = bsub.add_parser("report", help="the morning report of a night's runs (HTML and PDF)")
    m.add_argument("--night", type=date.fromisoformat, metavar="DATE",
                   help="the night's date, noon to noon local time (default: last night)")
    m.add_argument("--out", help="folder for the report (default batch.report_dir)")
    m.add_argument("--no-pdf", action="store_true", help="HTML only")
    m.add_argument("--json", action="store_true", help="the report's figures as JSON on stdout")
    m.set_defaults(func=report)


def _config(args: argparse.Namespace):
    cfg = load_config(args)
    if getattr(args, "weights", None):
        cfg.detectors = cfg.detectors.model_copy(update={"weights": args.weights})
    return cfg


def run(args: argparse.Namespace) -> int:
    from citywatch import batch

    cfg = _config(args)
    with app.open_database(cfg, name="citywatch-batch") as db:
        summary = batch.run(cfg, db, args.sources, drone=args.drone, camera=args.camera,
                            start=args.start, sample_fps=args.fps, samplers=args.samplers,
                            workers=args.workers, stop=stop_on_signals(),
                            evaluate_rules=not args.no_rules)
    p = summary.progress
    text = (f"run {summary.run_id} {summary.status}: {summary.sources} files "
            f"({summary.new_sources} new), {p.get('sampled', 0)} frames sampled, "
            f"{p.get('detected', 0)} detected, {summary.cases.get('created', 0)} new cases, "
            f"{summary.wall_s:.1f} s"
            + "".join(f"\n  refused: {r}" for r in summary.refused)
            + "".join(f"\n  failed: {f}" for f in summary.failed))
    emit(summary.as_dict(), args.json, text)
    return 0 if summary.status == "done" and not summary.refused and not summary.failed else (
        130 if summary.status == "interrupted" else 1)


def schedule(args: argparse.Namespace) -> int:
    from citywatch import batch

    cfg = _config(args)
    if args.workers is not None:
        cfg.detectors = cfg.detectors.model_copy(update={"workers": args.workers})
    with app.open_database(cfg, name="citywatch-batch") as db:
        batch.schedule(cfg, db, stop_on_signals(), once=args.once)
    return 0


def report(args: argparse.Namespace) -> int:
    from ingest.batch import report as night_report
    from storage.evidence import EvidenceStore

    cfg = load_config(args)
    tz = cfg.batch.timezone
    night = args.night or night_report.last_night(datetime.now(UTC), ZoneInfo(tz))
    out = Path(args.out) if args.out else cfg.resolve(cfg.batch.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    with app.open_database(cfg, name="citywatch-batch") as db:
        r = night_report.build(db, night, tz)
    store = EvidenceStore(cfg.evidence_dir)
    written = [night_report.write_html(r, store, out)]
    if not args.no_pdf:
        written.append(night_report.write_pdf(r, store, out, cfg.batch.report_font))
    data = r.as_dict() | {"written": [str(p) for p in written]}
    emit(data, args.json, f"night of {night}: {len(r.sources)} files, {r.sampled} frames, "
                          f"{len(r.cases)} cases\n" + "\n".join(str(p) for p in written))
    return 0


def status(args: argparse.Namespace) -> int:
    from storage import batch as batch_repo

    cfg = load_config(args)
    with app.open_database(cfg, name="citywatch-batch") as db, db.connection() as conn:
        runs = batch_repo.recent_runs(conn, args.limit)
    lines = [f"run {r['run_id']:>5} {r['status']:<11} started {r['started_at']:%Y-%m-%d %H:%M} "
             f"by {r['started_by']}: {r['progress']['sources']} files, "
             f"{r['progress']['sampled']}/{r['progress']['samples']} sampled, "
             f"{r['progress']['detected']} detected, {r['progress']['chunks_open']} chunks open"
             for r in runs]
    emit(runs, args.json, "\n".join(lines) or "no batch runs yet")
    return 0
