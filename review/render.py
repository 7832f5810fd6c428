"""Server-side drawing: detection boxes over frames (OpenCV), the series chart and the
district map (SVG). Nothing is fetched from anywhere; every page works offline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any

import cv2
import numpy as np

from storage.frames import StoredDetection
from storage.rule_queries import BUCKET_ORIGIN

BOX_COLOURS = [(0, 0, 255), (0, 160, 255), (255, 0, 255), (255, 128, 0), (0, 200, 0)]


def annotate(jpeg: bytes, detections: Sequence[StoredDetection]) -> bytes | None:
    """A JPEG copy of a frame with each detection's box, class and confidence drawn on it;
    None when the bytes are not an image. The original is never changed."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h = img.shape[0]
    thickness = max(2, h // 240)
    scale = max(0.5, h / 900)
    for i, stored in enumerate(detections):
        d = stored.detection
        cls, conf, x1, y1, x2, y2 = d.class_name, d.confidence, d.x1, d.y1, d.x2, d.y2
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(img, p1, p2, colour, thickness)
        label = f"{cls} {conf:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(p1[1] - th - base - 4, 0)
        cv2.rectangle(img, (p1[0], top), (p1[0] + tw + 6, top + th + base + 4), colour, -1)
        cv2.putText(img, label, (p1[0] + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    ok, out = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out.tobytes() if ok else None


OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
       "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


def violating_windows(rows: list[list], column: int, window: timedelta, op: str,
                      limit: float) -> list[tuple[datetime, datetime, float]]:
    """Windows (binned from the rule engine's origin) whose mean breaks the limit,
    computed from the snapshot's own rows."""
    width = window.total_seconds()
    origin = datetime.fromisoformat(BUCKET_ORIGIN).timestamp()
    bins: dict[float, list[float]] = {}
    for r in rows:
        if r[column] is None:
            continue
        t = datetime.fromisoformat(r[0]).timestamp()
        bins.setdefault(t - (t - origin) % width, []).append(float(r[column]))
    out = []
    for start, values in sorted(bins.items()):
        mean = sum(values) / len(values)
        if OPS[op](mean, limit):
            s = datetime.fromtimestamp(start).astimezone()
            out.append((s, s + window, mean))
    return out


def series_svg(snapshot: dict[str, Any], metric: str, *, limit: float | None = None,
               window: timedelta | None = None, op: str = ">", episode: tuple | None = None,
               tz=None, width: int = 760, height: int = 260) -> str:
    """An SVG line chart of one field of a series snapshot, with the limit as a dashed line,
    the windows that broke it shaded red and the episode bracketed."""
    fields = snapshot.get("fields", [])
    if metric not in fields:
        return f'<p class="muted">no {escape(metric)} in this snapshot</p>'
    col = fields.index(metric)
    pts = [(datetime.fromisoformat(r[0]), float(r[col])) for r in snapshot.get("rows", [])
           if r[col] is not None and r[0] is not None]
    if not pts:
        return '<p class="muted">no readings in this snapshot</p>'
    left, right, top, bottom = 52, 12, 14, 30
    t0, t1 = pts[0][0], pts[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)
    vmax = max([v for _, v in pts] + ([limit * 1.2] if limit else []))
    vmin = min(0.0, min(v for _, v in pts))
    vspan = (vmax - vmin) or 1.0

    def x(t: datetime) -> float:
        return left + (t - t0).total_seconds() / span * (width - left - right)

    def y(v: float) -> float:
        return top + (1 - (v - vmin) / vspan) * (height - top - bottom)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(metric)} over the episode" xmlns="http://www.w3.org/2000/svg">']
    if limit is not None and window is not None:
        for s, e, mean in violating_windows(snapshot["rows"], col, window, op, limit):
            if episode and (e <= episode[0] or s >= episode[1]):
                continue
            xs, xe = max(x(s), left), min(x(e), width - right)
            if xe > xs:
                parts.append(f'<rect class="violating" x="{xs:.1f}" y="{top}" width="{xe - xs:.1f}"'
                             f' height="{height - top - bottom}"><title>window mean '
                             f'{mean:.3f} {escape(op)} {limit}</title></rect>')
    if episode:
        for t in episode:
            if t0 <= t <= t1:
                parts.append(f'<line class="episode" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" '
                             f'y2="{height - bottom}"/>')
    for i in range(5):
        v = vmin + vspan * i / 4
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" '
                     f'y2="{y(v):.1f}"/><text class="tick" x="{left - 4}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end">{v:.3g}</text>')
    for i in range(5):
        t = t0 + timedelta(seconds=span * i / 4)
        label = (t.astimezone(tz) if tz else t).strftime("%H:%M")
        parts.append(f'<text class="tick" x="{x(t):.1f}" y="{height - 10}" '
                     f'text-anchor="middle">{label}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v) in enumerate(pts))
    parts.append(f'<path class="series" d="{path}"/>')
    if limit is not None:
        parts.append(f'<line class="limit" x1="{left}" x2="{width - right}" y1="{y(limit):.1f}" '
                     f'y2="{y(limit):.1f}"/><text class="limit-label" x="{width - right - 4}" '
                     f'y="{y(limit) - 5:.1f}" text-anchor="end">limit {limit:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- the district map ---------------------------------------------------------------------

CREDIT_COLOURS = {"green": "#1a9850", "yellow": "#e6b800", "red": "#d73027"}


class Projection:
    """Longitude / latitude to SVG units (metres east and south of the north-west corner)."""

    def __init__(self, bounds: tuple[float, float, float, float]):
        self.w, self.s, self.e, self.n = bounds
        self.kx = 111_320 * math.cos(math.radians((self.s + self.n) / 2))
        self.ky = 110_540

    def __call__(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.w) * self.kx, (self.n - lat) * self.ky

    @property
    def size(self) -> tuple[float, float]:
        return self(self.e, self.s)


def _rings(geometry: dict) -> list[list[list[float]]]:
    t, c = geometry.get("type"), geometry.get("coordinates")
    if t == "Polygon":
        return [c[0]]
    if t == "MultiPolygon":
        return [p[0] for p in c]
    if t == "LineString":
        return [c]
    if t == "Point":
        return [[c]]
    return []


def centroid(geometry: dict) -> tuple[float, float]:
    pts = [p for ring in _rings(geometry) for p in ring]
    return (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))


def map_svg(areas: list[dict], streets: list[dict], subjects: list[tuple],
            cases: list[tuple], codes: dict[str, str]) -> str:
    """The district as SVG: areas, streets, sites and permits as shapes, merchants as dots
    coloured by credit code, open cases as markers; each links to its page.

    `subjects`: (subject_id, kind, name, geometry); `cases`: (case_id, rule_id, status,
    subject_id, geometry)."""
    pts = [p for a in areas for ring in _rings(a["geometry"]) for p in ring]
    proj = Projection((min(p[0] for p in pts), min(p[1] for p in pts),
                       max(p[0] for p in pts), max(p[1] for p in pts)))
    w, h = proj.size

    def poly(geometry: dict) -> str:
        return " ".join(f"{proj(*p)[0]:.1f},{proj(*p)[1]:.1f}" for ring in _rings(geometry)
                        for p in ring)

    out = [f'<svg id="district-map" viewBox="0 0 {w:.0f} {h:.0f}" '
           'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="district map">']
    for a in areas:
        name = escape(a["properties"].get("name", ""))
        ax, ay = proj(*centroid(a["geometry"]))
        out.append(f'<polygon class="area" points="{poly(a["geometry"])}"><title>{name}</title>'
                   f'</polygon><text class="area-label" x="{ax:.0f}" y="{ay:.0f}">{name}</text>')
    for s in streets:
        out.append(f'<polyline class="street" points="{poly(s["geometry"])}"><title>'
                   f'{escape(s["properties"].get("name", ""))}</title></polyline>')
    for sid, kind, name, geometry in subjects:
        href = f"/subjects/{escape(sid)}"
        title = f"<title>{escape(sid)} {escape(name)}</title>"
        if kind == "merchant":
            cx, cy = proj(*centroid(geometry))
            colour = CREDIT_COLOURS[codes.get(sid, "green")]
            out.append(f'<a href="{href}"><circle class="merchant" cx="{cx:.1f}" cy="{cy:.1f}" '
                       f'r="38" fill="{colour}" data-code="{codes.get(sid, "green")}">{title}'
                       '</circle></a>')
        elif kind in ("site", "permit"):
            colour = CREDIT_COLOURS[codes.get(sid, "green")] if kind == "site" else "#4575b4"
            out.append(f'<a href="{href}"><polygon class="{kind}" points="{poly(geometry)}" '
                       f'stroke="{colour}">{title}</polygon></a>')
    for case_id, rule_id, status, sid, geometry in cases:
        cx, cy = proj(*centroid(geometry))
        out.append(f'<a href="/cases/{case_id}"><path class="case-marker case-{escape(status)}" '
                   f'd="M{cx:.1f},{cy - 110:.1f} l60,95 h-120 z"><title>case {case_id} '
                   f'{escape(rule_id)} ({escape(status)}) at {escape(sid)}</title></path></a>')
    out.append("</svg>")
    return "".join(out)
