"""Batch runs end to end with the trained default model: recorded footage in, frames in the
one frames queue, detections at the right merchants, cases; the same file twice adds
nothing; a truncated file is processed up to the damage and reported; a cone camera's
recording lands at its permit."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from citywatch import batch
from domain.geo import distance_m
from ingest.batch import report, video
from simulators import footage
from storage import batch as batch_repo
from storage import frames as frames_repo
from storage.cases import list_cases
from storage.evidence import EvidenceStore

from .conftest import STALLS, copy_to

MAX_ERROR_M = 5.0
MIN_CONFIDENCE = 0.5  # what drone.street_vending counts; weaker guesses open no case


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_stalls_found(conn, truth: dict[str, footage.PlacedObject]) -> set[str]:
    """Every stall detection that counts (confidence at least the rule's) within 5 m of a
    placed stall and matched to its merchant (the bar of tests/detectors/test_end_to_end.py);
    returns the merchants found."""
    found = set()
    for d in frames_repo.detections(conn):
        det = d.detection
        if det.class_name != "street_stall" or det.confidence < MIN_CONFIDENCE:
            continue
        nearest = min(truth.values(), key=lambda o: distance_m(det.lat, det.lon, o.lat, o.lon))
        error = distance_m(det.lat, det.lon, nearest.lat, nearest.lon)
        assert error <= MAX_ERROR_M, f"stall detection {error:.1f} m from the nearest stall"
        assert (det.subject_id, det.zone_kind) == (nearest.subject_id, "frontage")
        found.add(det.subject_id)
    return found


@pytest.mark.slow
def test_drone_video_with_srt_finds_the_stalls_and_a_second_run_adds_nothing(
        trained, db, street_video, tmp_path):
    clip = street_video
    index = video.probe(clip.path)
    samples = index.sample(1)
    assert clip.seen_stalls(samples) == set(STALLS)  # the pass does fly over every stall

    first = batch.run(trained, db, [clip.path.parent], progress=False)
    assert (first.status, first.sources, first.new_sources, first.refused) == ("done", 1, 1, [])
    sha = _sha(clip.path)
    with db.connection() as conn:
        assert frames_repo.status_counts(conn)["done"] == len(samples)
        rows = batch_repo.sampled_frames(conn, sha)
        assert [r[0] for r in rows] == samples
        assert [r[1] for r in rows] == [index.media_time(i) for i in samples]
        # each queued frame points back at its exact frame of the original file
        f = frames_repo.get_frame(conn, rows[10][2])
        assert f.header["batch"] == {"source_sha256": sha, "frame_index": samples[10],
                                     "media_time_s": index.media_time(samples[10]),
                                     "file": clip.path.name}
        assert f.source_kind == "drone" and f.source_id == "UAV-01"
        assert f.ts == clip.start + timedelta(seconds=index.media_time(samples[10]))
        assert set(assert_stalls_found(conn, {o.subject_id: o for o in clip.stalls()})) == set(STALLS)
        cases = list_cases(conn)
        assert sorted(c.subject_id for c in cases if c.rule_id == "drone.street_vending") == STALLS
        detections = len(frames_repo.detections(conn))
    original = trained.evidence_dir / "originals" / sha[:2] / sha[2:4] / f"{sha}.mp4"
    assert _sha(original) == sha

    # the morning report: the cases with their best frames, the stalls' merchants covered
    night = report.last_night(datetime.now(UTC), ZoneInfo(trained.batch.timezone))
    r = report.build(db, night, trained.batch.timezone)
    data = r.as_dict()
    assert (data["files"], data["frames_sampled"], data["frames_fit"]) == (1, len(samples),
                                                                          len(samples))
    assert data["footage_hours"] == round(index.duration_s / 3600, 3)
    assert data["cases_by_rule_and_area"] == [
        {"rule_id": "drone.street_vending", "area_id": "AR-05", "cases": 4}]
    assert set(STALLS) <= set(data["seen"]["merchant"])
    assert data["not_seen"]["merchant"] > 1000 and data["failures"]["sources"] == []
    store = EvidenceStore(trained.evidence_dir)
    html = report.write_html(r, store, tmp_path)
    pdf = report.write_pdf(r, store, tmp_path, trained.batch.report_font)
    thumbs = sorted((tmp_path / html.stem).glob("case-*.jpg"))
    assert len(thumbs) == 4 and all(t.name in html.read_text() for t in thumbs)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000

    second = batch.run(trained, db, [clip.path.parent], progress=False)
    assert (second.status, second.new_sources) == ("done", 0)
    with db.connection() as conn:
        assert sum(frames_repo.status_counts(conn).values()) == len(samples)
        assert len(batch_repo.sampled_frames(conn, sha)) == len(samples)
        assert len(frames_repo.detections(conn)) == detections
        assert len(list_cases(conn)) == len(cases)


@pytest.mark.slow
def test_photo_folder_with_exif_and_xmp_finds_the_stalls(trained, db, registry, tmp_path):
    shots = footage.drone_photos(registry, "ST-004", tmp_path / "UAV-01", stalls=STALLS,
                                 width=640, height=480, spacing_m=25.0, seed=4)
    summary = batch.run(trained, db, [shots.path], progress=False)
    assert (summary.status, summary.sources, summary.refused) == ("done", shots.frames, [])
    with db.connection() as conn:
        assert frames_repo.status_counts(conn)["done"] == shots.frames
        assert assert_stalls_found(conn, {o.subject_id: o for o in shots.stalls()}) == set(STALLS)
        first = sorted(shots.path.glob("*.JPG"))[0]
        f = frames_repo.get_frame(conn, _sha(first))  # the photo itself is the evidence
        assert f.pose.alt_m == 40.0 and f.pose.gimbal_pitch_deg == -90.0
        assert abs(f.pose.hfov_deg - 84.0) < 0.1


def test_truncated_video_is_processed_up_to_the_damage_and_reported(trained, db, short_clip,
                                                                     tmp_path):
    data = short_clip.path.read_bytes()
    cut = copy_to(short_clip.path, tmp_path / "UAV-01")
    cut.write_bytes(data[: len(data) // 2])
    readable = video.probe(cut)
    summary = batch.run(trained, db, [cut], progress=False, evaluate_rules=False)
    assert summary.status == "done"
    with db.connection() as conn:
        source = batch_repo.get_source(conn, _sha(cut))
        assert source.status == "partial"
        assert any("damaged" in p and "of the 120 frames" in p for p in source.problems)
        assert source.samples == len(readable.sample(1))
        queued = len(batch_repo.sampled_frames(conn, source.sha256))
        chunks = batch_repo.chunk_states(conn, source.sha256)
    # the frames before the damage are queued; a frame at the cut that does not decode is
    # counted and named, not lost silently
    assert queued >= source.samples - 1 and queued >= 2
    assert all(status == "done" for _, status, _, _ in chunks)
    if queued < source.samples:
        assert "not decodable" in chunks[-1][3]
    r = report.build(db, report.last_night(datetime.now(UTC), ZoneInfo(trained.batch.timezone)),
                     trained.batch.timezone).as_dict()
    (failed,) = r["failures"]["sources"]
    assert failed["status"] == "partial" and "damaged" in failed["problems"][0]


def test_cone_camera_recording_lands_at_its_permit(trained, db, registry, tmp_path):
    start = datetime(2026, 11, 26, 22, 0, tzinfo=timezone(timedelta(hours=8)))
    clip = footage.camera_video(registry, "P-003", tmp_path, scenario="no_helmet",
                                seconds=3.0, width=640, height=480, start=start, seed=6)
    summary = batch.run(trained, db, [clip.path], camera=clip.device_id, progress=False,
                        evaluate_rules=False)
    assert summary.status == "done" and summary.progress["detected"] == 3
    with db.connection() as conn:
        found = frames_repo.detections(conn)
        sha = _sha(clip.path)
        times = [r[3] for r in batch_repo.sampled_frames(conn, sha)]
    assert times == [start + timedelta(seconds=s) for s in (0, 1, 2)]
    assert {d.detection.subject_id for d in found} == {"P-003"}
    assert {d.source_kind for d in found} == {"cone"}
    assert "worker_no_helmet" in {d.detection.class_name for d in found}


def test_unknown_device_and_video_without_srt_are_refused_with_reasons(trained, db,
                                                                       short_clip, tmp_path):
    lone = tmp_path / "UAV-01" / "DJI_0009.MP4"
    lone.parent.mkdir()
    lone.write_bytes(short_clip.path.read_bytes())
    stranger = copy_to(short_clip.path, tmp_path / "NOT-A-DRONE")
    summary = batch.run(trained, db, [lone, stranger, tmp_path / "missing.MP4"],
                        progress=False)
    reasons = "\n".join(summary.refused)
    assert "without its SRT telemetry file" in reasons
    assert "'NOT-A-DRONE' is not in the registry" in reasons
    assert "no such file or folder" in reasons
    assert summary.sources == 0


def test_unreadable_files_are_named_in_the_summary_not_only_logged(trained, db, tmp_path):
    folder = tmp_path / "UAV-01"
    folder.mkdir()
    (folder / "DJI_0001.MP4").write_bytes(bytes(range(256)) * 20)
    (folder / "DJI_0001.SRT").write_text("1\n00:00:00,000 --> 00:00:00,033\ngarbage\n\n")
    (folder / "DJI_0002.JPG").write_bytes(b"not a jpeg")
    summary = batch.run(trained, db, [folder], progress=False, evaluate_rules=False)
    assert (summary.status, summary.sources, summary.refused) == ("done", 2, [])
    failed = "\n".join(summary.as_dict()["failed"])
    assert len(summary.failed) == 2
    assert "DJI_0001.MP4: " in failed and "not readable as video" in failed
    assert "DJI_0002.JPG: not a readable JPEG" in failed
