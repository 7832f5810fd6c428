"""The morning report of a night's batch runs, as HTML and as PDF for the desk.

A night is the local noon-to-noon day of its date (`--night 2026-11-26` covers runs started
from 12:00 on the 26th to 12:00 on the 27th). The report says:

- what was processed: files, hours of footage, frames sampled, unfit frames and why;
- what was found: cases resting on the night's frames, by rule and area, each with a
  thumbnail of its best frame (the most confident detection at the case's subject);
- proof of coverage: which merchants, construction sites and road-works permits were seen
  in at least one frame fit as evidence (a drone frame's ground footprint touches the
  subject; a cone camera sees its own permit), and which were not;
- failures: files refused or damaged, chunks with undecodable frames, frames that failed
  detection;
- throughput: footage and sampled frames per second of wall time.

The PDF is written with fpdf2 (pure Python, no network, no browser); Chinese text needs a
CJK TrueType font (`batch.report_font`, WenQuanYi Micro Hei by default).
"""

from __future__ import annotations

import html
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from shapely import STRtree
from shapely.geometry import Polygon, shape

from detectors.georef import GeorefError, pixels_to_wgs84
from domain.vocabulary import DeviceKind
from storage import batch as batch_repo
from storage import registry as registry_repo
from storage.batch import FoundCase, Source
from storage.db import Database
from storage.errors import StorageError
from storage.evidence import EvidenceStore
from storage.frames import Frame

log = logging.getLogger(__name__)

COVERED_KINDS = ("merchant", "site", "permit")
THUMB_WIDTH = 360


@dataclass
class NightReport:
    night: date
    timezone: str
    runs: list[dict]
    sources: list[tuple[Source, int]]
    frames: int = 0
    fit: int = 0
    unfit_by_reason: dict[str, int] = field(default_factory=dict)
    failed_frames: list[tuple[str, str]] = field(default_factory=list)  # (frame, error)
    cases: list[FoundCase] = field(default_factory=list)
    seen: dict[str, list[tuple[str, str, str | None]]] = field(default_factory=dict)
    not_seen: dict[str, list[tuple[str, str, str | None]]] = field(default_factory=dict)
    chunk_problems: list[tuple] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def footage_s(self) -> float:
        return sum(s.duration_s for s, _ in self.sources if s.kind != "photo")

    @property
    def photos(self) -> int:
        return sum(1 for s, _ in self.sources if s.kind == "photo")

    @property
    def sampled(self) -> int:
        return sum(n for _, n in self.sources)

    def by_rule_and_area(self) -> dict[tuple[str, str], int]:
        return dict(Counter((c.rule_id, c.area_id or "-") for c in self.cases))

    def throughput(self) -> dict[str, float]:
        if self.wall_s <= 0:
            return {}
        return {"footage_s_per_s": self.footage_s / self.wall_s,
                "sampled_per_s": self.sampled / self.wall_s,
                "wall_s": self.wall_s}

    def as_dict(self) -> dict:
        return {
            "night": self.night.isoformat(), "runs": [r["run_id"] for r in self.runs],
            "files": len(self.sources), "photos": self.photos,
            "footage_hours": round(self.footage_s / 3600, 3), "frames_sampled": self.sampled,
            "frames_fit": self.fit, "unfit_by_reason": self.unfit_by_reason,
            "failed_frames": len(self.failed_frames),
            "cases": [{"case_id": c.case_id, "rule_id": c.rule_id, "subject_id": c.subject_id,
                       "area_id": c.area_id, "evidence_state": c.evidence_state,
                       "best_frame": c.best_sha256} for c in self.cases],
            "cases_by_rule_and_area": [
                {"rule_id": r, "area_id": a, "cases": n}
                for (r, a), n in sorted(self.by_rule_and_area().items())],
            "seen": {k: [s[0] for s in v] for k, v in self.seen.items()},
            "not_seen": {k: len(v) for k, v in self.not_seen.items()},
            "failures": {"sources": [{"file": s.path, "status": s.status,
                                      "problems": s.problems}
                                     for s, _ in self.sources if s.status != "done"],
                         "chunks": [{"file": p, "chunk": n, "status": st, "error": e}
                                    for p, n, st, e in self.chunk_problems]},
            "throughput": {k: round(v, 3) for k, v in self.throughput().items()},
        }


def night_window(night: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Noon of `night` to noon of the next day, local time."""
    start = datetime.combine(night, time(12), tz)
    return start, start + timedelta(days=1)


def last_night(now: datetime, tz: ZoneInfo) -> date:
    """The night a report written at `now` is about (before noon: the previous date)."""
    local = now.astimezone(tz)
    return (local - timedelta(hours=12)).date()


def _reason_code(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _footprint(frame: Frame) -> Polygon | None:
    w, h = frame.width, frame.height
    try:
        corners = pixels_to_wgs84(frame.pose, w, h, np.array([[0, 0], [w, 0], [w, h], [0, h]]))
    except GeorefError:
        return None
    pts = [(lon, lat) for c in corners if c for lat, lon in [c]]
    return Polygon(pts) if len(pts) >= 3 else None


def build(db: Database, night: date, tz_name: str) -> NightReport:
    """Gather one night's report from the database."""
    tz = ZoneInfo(tz_name)
    since, until = night_window(night, tz)
    with db.connection() as conn:
        runs = batch_repo.runs_between(conn, since, until)
        ids = [r["run_id"] for r in runs]
        report = NightReport(night, tz_name, runs, batch_repo.sources_of_runs(conn, ids))
        frames = batch_repo.night_frames(conn, ids)
        report.cases = batch_repo.cases_from_runs(conn, ids)
        report.chunk_problems = batch_repo.failed_chunks(conn, ids)
        subjects = [s for s in registry_repo.subjects(conn) if s.kind in COVERED_KINDS]
        camera_subject = {d.device_id: d.subject_id
                          for d in registry_repo.devices(conn, DeviceKind.CONE_CAMERA)}
    report.frames = len(frames)
    unfit: Counter[str] = Counter()
    for f, status, error in frames:
        if f.fit_as_evidence:
            report.fit += 1
        else:
            for reason in (f.unfit_reason or "unknown").split(";"):
                unfit[_reason_code(reason)] += 1
        if status == "failed":
            report.failed_frames.append((f.sha256, error or ""))
    report.unfit_by_reason = dict(unfit)
    # proof of coverage: subjects touched by a fit frame
    geoms = [shape(s.geometry) for s in subjects]
    tree = STRtree(geoms)
    seen_ids: set[str] = set()
    for f, _status, _error in frames:
        if not f.fit_as_evidence:
            continue
        if f.source_kind == "cone":
            if camera_subject.get(f.source_id):
                seen_ids.add(camera_subject[f.source_id])
        elif f.pose is not None:
            footprint = _footprint(f)
            if footprint is not None:
                seen_ids.update(subjects[i].subject_id
                                for i in tree.query(footprint, predicate="intersects"))
    seen: dict[str, list] = defaultdict(list)
    not_seen: dict[str, list] = defaultdict(list)
    for s in subjects:
        (seen if s.subject_id in seen_ids else not_seen)[s.kind].append(
            (s.subject_id, s.name, s.area_id))
    report.seen, report.not_seen = dict(seen), dict(not_seen)
    ends = [r["finished_at"] for r in runs if r["finished_at"]]
    if runs and ends:
        report.wall_s = sum((r["finished_at"] - r["started_at"]).total_seconds()
                            for r in runs if r["finished_at"])
    return report


def thumbnail(store: EvidenceStore, case: FoundCase) -> bytes | None:
    """The case's best frame, scaled to THUMB_WIDTH, with the detection boxed."""
    if not case.best_sha256:
        return None
    try:
        data = store.get(case.best_sha256)
    except StorageError as exc:
        log.error("case %s: best frame unreadable: %s", case.case_id, exc)
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    if case.best_box:
        x1, y1, x2, y2 = (int(round(v)) for v in case.best_box)
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), max(2, img.shape[1] // 320))
    scale = THUMB_WIDTH / img.shape[1]
    img = cv2.resize(img, (THUMB_WIDTH, max(1, round(img.shape[0] * scale))),
                     interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else None


# -- HTML ---------------------------------------------------------------------------------

_CSS = """body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC",sans-serif;margin:2em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.num{text-align:right}.case img{width:360px}.bad{color:#b00}small{color:#666}"""


def _table(head: list[str], rows: list[list], num: set[int] = frozenset()) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{html.escape(str(v))}</td>' if i in num
                         else f"<td>{html.escape(str(v))}</td>" for i, v in enumerate(r))
        + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _summary_lines(r: NightReport) -> list[tuple[str, str]]:
    t = r.throughput()
    return [
        ("Runs", ", ".join(str(x["run_id"]) for x in r.runs) or "none"),
        ("Files", f"{len(r.sources)} ({r.photos} photos)"),
        ("Footage", f"{r.footage_s / 3600:.2f} h"),
        ("Frames sampled", str(r.sampled)),
        ("Fit as evidence", f"{r.fit} of {r.frames}"),
        ("Throughput", f"{t['footage_s_per_s']:.1f} s of footage and {t['sampled_per_s']:.2f} "
                       f"sampled frames per second ({t['wall_s']:.0f} s of runs)" if t else "-"),
    ]


def write_html(report: NightReport, store: EvidenceStore, out_dir: Path) -> Path:
    """`<out_dir>/night-<date>.html` with its thumbnails in `<out_dir>/night-<date>/`."""
    stem = f"night-{report.night.isoformat()}"
    thumbs = out_dir / stem
    thumbs.mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><html lang=zh><meta charset=utf-8><title>citywatch night "
             f"{report.night}</title><style>{_CSS}</style>",
             f"<h1>Night of {report.night} <small>({html.escape(report.timezone)}, noon to "
             "noon)</small></h1>", "<h2>Processed</h2>",
             _table(["", ""], [list(x) for x in _summary_lines(report)])]
    parts.append(_table(["file", "device", "kind", "duration s", "frames sampled", "status"],
                        [[Path(s.path).name, s.device_id, s.kind, f"{s.duration_s:.1f}", n,
                          s.status] for s, n in report.sources], {3, 4}))
    if report.unfit_by_reason:
        parts.append("<h3>Unfit frames by reason</h3>" + _table(
            ["reason", "frames"], sorted(map(list, report.unfit_by_reason.items())), {1}))
    parts.append("<h2>Found</h2>")
    parts.append(_table(["rule", "area", "cases"],
                        [[r, a, n] for (r, a), n in sorted(report.by_rule_and_area().items())],
                        {2}) if report.cases else "<p>No case rests on last night's frames.</p>")
    for c in report.cases:
        thumb = thumbnail(store, c)
        img = ""
        if thumb:
            name = f"case-{c.case_id}.jpg"
            (thumbs / name).write_bytes(thumb)
            img = f'<img src="{stem}/{name}" alt="best frame of case {c.case_id}">'
        parts.append(
            f'<div class="case"><h3>Case {c.case_id}: {html.escape(c.title)}</h3>'
            f"<p>{html.escape(c.subject_id)} {html.escape(c.subject_name)} · area "
            f"{html.escape(c.area_id or '-')} · {html.escape(c.rule_id)} · evidence "
            f"{html.escape(c.evidence_state)} · since "
            f"{c.episode_start.astimezone(ZoneInfo(report.timezone)):%Y-%m-%d %H:%M}"
            f"<br><small>best frame {html.escape(c.best_sha256 or '-')} "
            f"({html.escape(c.best_class or '-')} {c.best_confidence or 0:.2f})</small></p>"
            f"{img}</div>")
    parts.append("<h2>Proof of coverage</h2><p>Seen in at least one frame fit as evidence:</p>")
    parts.append(_table(["kind", "seen", "not seen", "seen ids"],
                        [[k, len(report.seen.get(k, [])), len(report.not_seen.get(k, [])),
                          " ".join(s[0] for s in report.seen.get(k, []))]
                         for k in COVERED_KINDS], {1, 2}))
    parts.append("<details><summary>Not seen</summary>" + _table(
        ["kind", "id", "name", "area"],
        [[k, *s] for k in COVERED_KINDS for s in report.not_seen.get(k, [])]) + "</details>")
    parts.append("<h2>Failures</h2>")
    bad = [[Path(s.path).name, s.status, "; ".join(s.problems)]
           for s, _ in report.sources if s.status != "done"]
    bad += [[Path(p).name, f"chunk {n} {st}", e or ""] for p, n, st, e in report.chunk_problems]
    bad += [[sha[:16], "frame failed", err] for sha, err in report.failed_frames]
    parts.append(_table(["file", "status", "why"], bad) if bad else "<p>None.</p>")
    parts.append("</html>")
    path = out_dir / f"{stem}.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# -- PDF ----------------------------------------------------------------------------------


def write_pdf(report: NightReport, store: EvidenceStore, out_dir: Path,
              font: str | None) -> Path:
    """`<out_dir>/night-<date>.pdf` (fpdf2). Without a CJK font, Chinese text is replaced
    and a warning logged: the HTML report is then the complete one."""
    from fpdf import FPDF

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # its subsetting chatter
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    family = "helvetica"
    if font and Path(font).is_file():
        pdf.add_font("cjk", fname=font)
        family = "cjk"
    else:
        log.warning("no CJK font at %s: Chinese text is left out of the PDF", font)

    def txt(s: str) -> str:
        return s if family == "cjk" else s.encode("latin-1", "replace").decode("latin-1")

    pdf.add_page()
    pdf.set_font(family, size=16)
    pdf.cell(0, 10, txt(f"citywatch - night of {report.night} ({report.timezone})"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)

    def line(s: str, h: float = 5.5) -> None:
        pdf.multi_cell(0, h, txt(s), new_x="LMARGIN", new_y="NEXT")

    def heading(s: str) -> None:
        pdf.ln(2)
        pdf.set_font(family, size=13)
        line(s, 7)
        pdf.set_font(family, size=10)

    heading("Processed")
    for k, v in _summary_lines(report):
        line(f"{k}: {v}")
    for s, n in report.sources:
        line(f"  {Path(s.path).name}  {s.device_id}  {s.kind}  {s.duration_s:.1f} s  "
             f"{n} frames  {s.status}")
    if report.unfit_by_reason:
        line("Unfit frames: " + ", ".join(f"{k} {v}" for k, v in
                                          sorted(report.unfit_by_reason.items())))
    heading("Found")
    if not report.cases:
        line("No case rests on last night's frames.")
    for (r, a), n in sorted(report.by_rule_and_area().items()):
        line(f"  {r}  area {a}: {n}")
    for c in report.cases:
        line(f"Case {c.case_id}: {c.title} - {c.subject_id} {c.subject_name}, area "
             f"{c.area_id or '-'}, evidence {c.evidence_state}")
        thumb = thumbnail(store, c)
        if thumb:
            import io

            if pdf.get_y() > 200:
                pdf.add_page()
            pdf.image(io.BytesIO(thumb), w=80)
    heading("Proof of coverage")
    for k in COVERED_KINDS:
        seen = report.seen.get(k, [])
        line(f"{k}: {len(seen)} seen in a fit frame, {len(report.not_seen.get(k, []))} not seen")
        if seen:
            line("  seen: " + " ".join(s[0] for s in seen))
    heading("Failures")
    bad = [f"{Path(s.path).name}: {s.status}: {'; '.join(s.problems)}"
           for s, _ in report.sources if s.status != "done"]
    bad += [f"{Path(p).name} chunk {n} {st}: {e or ''}" for p, n, st, e in report.chunk_problems]
    bad += [f"frame {sha[:16]}: {err}" for sha, err in report.failed_frames]
    for b in bad or ["None."]:
        line(b)
    path = out_dir / f"night-{report.night.isoformat()}.pdf"
    pdf.output(str(path))
    return path
