"""Evidence packages: a case as one ZIP for a court or a hearing, checkable offline.

The package holds the original frame bytes (named by their sha256), annotated copies,
each series snapshot as the canonical JSON that was hashed and as CSV, photos (the
party's and the officers', named by sha256), the party's statements, the case's audit entries with their chain hashes, a case report
(HTML) and `manifest.json` with the sha256 of every other file. `verify_package` checks
all of it without a database and says exactly what does not match.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage import audit

MANIFEST = "manifest.json"
FORMAT = "citywatch-evidence-package/1"


@dataclass(frozen=True, slots=True)
class PackageFile:
    path: str
    data: bytes


def build(case: dict[str, Any], frames: list[tuple[str, bytes, bytes | None]],
          series: list[tuple[str, dict[str, Any]]], photos: list[tuple[str, str, bytes]],
          statements: list[dict[str, Any]], entries: list[audit.AuditEntry],
          report_html: str) -> bytes:
    """The ZIP bytes of a package.

    frames: (sha256, original bytes, annotated bytes or None); series: (recorded sha256,
    snapshot); photos: (sha256, suffix, bytes)."""
    files: list[PackageFile] = [PackageFile("case.json", _json(case))]
    for sha, original, annotated in frames:
        files.append(PackageFile(f"frames/{sha}.jpg", original))
        if annotated is not None:
            files.append(PackageFile(f"annotated/{sha}.jpg", annotated))
    for i, (_, snap) in enumerate(series, 1):
        name = f"series/{i:02d}-{snap.get('device_id', 'device')}"
        files.append(PackageFile(f"{name}.json", audit.canonical_json(snap).encode()))
        files.append(PackageFile(f"{name}.csv", _csv(snap)))
    for sha, suffix, data in photos:
        files.append(PackageFile(f"photos/{sha}{suffix}", data))
    if statements:
        files.append(PackageFile("party/statements.json", _json(statements)))
    files.append(PackageFile("audit.json", _json([
        e.body() | {"prev_hash": e.prev_hash, "hash": e.hash} for e in entries])))
    files.append(PackageFile("report.html", report_html.encode()))
    manifest = {"format": FORMAT, "case_id": case["case_id"],
                "created_at": datetime.now(UTC).isoformat(),
                "series_sha256": {f"series/{i:02d}-{s.get('device_id', 'device')}.json": sha
                                  for i, (sha, s) in enumerate(series, 1)},
                "files": {f.path: hashlib.sha256(f.data).hexdigest() for f in files}}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in files:
            # images are stored as they are (compressing JPEG gains nothing)
            kind = zipfile.ZIP_STORED if f.path.endswith((".jpg", ".png")) else zipfile.ZIP_DEFLATED
            zf.writestr(f.path, f.data, compress_type=kind)
        zf.writestr(MANIFEST, _json(manifest))
    return buf.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True,
                      default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)
                      ).encode()


def _csv(snapshot: dict[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(snapshot.get("fields", []))
    writer.writerows(snapshot.get("rows", []))
    return out.getvalue().encode()


def verify_package(data: bytes) -> list[str]:
    """Everything in a package that does not match (empty: intact)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        return [f"not a readable ZIP file: {exc}"]
    problems: list[str] = []
    contents: dict[str, bytes] = {}
    for info in zf.infolist():
        try:
            contents[info.filename] = zf.read(info)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            problems.append(f"{info.filename}: cannot be read back ({exc})")
    if MANIFEST not in contents:
        return problems + [f"{MANIFEST}: missing or unreadable, nothing can be checked"]
    try:
        manifest = json.loads(contents[MANIFEST])
        listed: dict[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return problems + [f"{MANIFEST}: not a manifest ({exc})"]
    for path, expected in sorted(listed.items()):
        if path not in contents:
            if not any(p.startswith(f"{path}:") for p in problems):
                problems.append(f"{path}: listed in the manifest but missing from the package")
            continue
        actual = hashlib.sha256(contents[path]).hexdigest()
        if actual != expected:
            problems.append(f"{path}: sha256 is {actual} but the manifest says {expected}")
    for path in sorted(set(contents) - set(listed) - {MANIFEST}):
        problems.append(f"{path}: in the package but not in the manifest (added)")
    for path, data in contents.items():
        if path.startswith(("frames/", "photos/")) and not path.endswith(".json"):
            name = path.rsplit("/", 1)[1].split(".")[0]
            actual = hashlib.sha256(data).hexdigest()
            if actual != name:
                problems.append(f"{path}: bytes hash to {actual}, not to the evidence hash "
                                "in its name")
    for path, recorded in manifest.get("series_sha256", {}).items():
        if path in contents:
            try:
                actual = audit.sha256_json(json.loads(contents[path]))
            except ValueError as exc:
                problems.append(f"{path}: not JSON ({exc})")
                continue
            if actual != recorded:
                problems.append(f"{path}: snapshot hashes to {actual}, the case recorded "
                                f"{recorded}")
    if "audit.json" in contents:
        try:
            entries = json.loads(contents["audit.json"])
            for e in entries:
                body = {k: e[k] for k in ("seq", "at", "actor", "action", "entity",
                                          "entity_id", "data")}
                if audit.entry_hash(e["prev_hash"], body) != e["hash"]:
                    problems.append(f"audit.json: entry #{e['seq']} ({e['action']}) does not "
                                    "match its chain hash")
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"audit.json: unreadable ({exc})")
    return problems
