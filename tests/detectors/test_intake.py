"""Frames in: envelopes over real Mosquitto through the collector into the evidence store
and the frames queue; bad envelopes dead-lettered with their reasons."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from detectors.offline import MissingExtra, import_ultralytics
from ingest import envelope
from ingest.decode import Address, Message
from ingest.errors import Rejected
from ingest.frames import decode_frame
from simulators.drone import FramePublisher, frame_topic
from storage import frames as frames_repo
from storage.evidence import EvidenceStore, sha256_of

from .conftest import wait_until

# ultralytics patches PIL.Image.open process-wide (an unknown image makes it try to install
# a HEIF plugin); where it is installed, a collector may run beside ultralytics detector
# workers and have it loaded, so must we.
with contextlib.suppress(MissingExtra):
    import_ultralytics()

NOW = datetime.now(UTC).replace(microsecond=0)
POSE = {"lat": 30.3, "lon": 120.1, "alt_m": 40.0, "heading_deg": 90.0,
        "gimbal_pitch_deg": -90.0, "hfov_deg": 84.0}


def jpeg(width: int = 640, height: int = 480, seed: int = 0, flat: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    img = (np.full((height, width, 3), 128, np.uint8) if flat
           else rng.integers(40, 200, (height, width, 3), dtype=np.uint8))
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def png() -> bytes:
    return cv2.imencode(".png", np.zeros((480, 640, 3), np.uint8))[1].tobytes()


GOOD = jpeg()
HEADER = {"ts": NOW.isoformat()} | POSE

# (name, kind, payload, reason)
BAD = [
    ("empty", "drone_frame", b"", "bad_envelope"),
    ("header_overruns", "drone_frame", struct.pack(">I", 5000) + b"{}", "bad_envelope"),
    ("header_not_json", "cone_frame", struct.pack(">I", 3) + b"{x}" + GOOD, "bad_envelope"),
    ("header_is_list", "cone_frame", struct.pack(">I", 2) + b"[]" + GOOD, "bad_envelope"),
    ("no_pose", "drone_frame", envelope.encode({"ts": NOW.isoformat()}, GOOD), "missing_pose"),
    ("no_hfov", "drone_frame",
     envelope.encode({k: v for k, v in HEADER.items() if k != "hfov_deg"}, GOOD), "missing_pose"),
    ("alt_text", "drone_frame", envelope.encode(HEADER | {"alt_m": "high"}, GOOD), "bad_type"),
    ("lat_out_of_range", "drone_frame", envelope.encode(HEADER | {"lat": 91}, GOOD), "out_of_range"),
    ("no_ts", "cone_frame", envelope.encode({}, GOOD), "missing_field"),
    ("bad_ts", "cone_frame", envelope.encode({"ts": "yesterday"}, GOOD), "bad_timestamp"),
    ("png", "cone_frame", envelope.encode(HEADER, png()), "not_jpeg"),
    ("no_image", "cone_frame", envelope.encode(HEADER, b""), "not_jpeg"),
    ("garbage_after_marker", "cone_frame",
     envelope.encode(HEADER, b"\xff\xd8\xff" + bytes(range(256)) * 4), "not_jpeg"),
    ("truncated", "cone_frame", envelope.encode(HEADER, GOOD[: len(GOOD) // 3]), "not_jpeg"),
    ("too_many_pixels", "cone_frame", envelope.encode(HEADER, jpeg(2000, 1600, flat=True)), "too_many_pixels"),
    ("too_many_bytes", "cone_frame", envelope.encode(HEADER, jpeg(1200, 900, seed=3)),
     "image_too_large"),
]


def message(kind: str, payload: bytes, device: str = "UAV-01") -> Message:
    # received now, not when this module was imported: frames rendered later in a long
    # session carry later event times, which must not read as coming from the future
    return Message(f"cw/{kind}", payload, datetime.now(UTC), Address(kind, device))


@pytest.fixture
def limited(config):
    config.detectors.intake.max_pixels = 2_000_000
    config.ingest.max_frame_bytes = 400_000
    return config


@pytest.mark.parametrize(("name", "kind", "payload", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_frames_are_rejected_with_their_reason(limited, name, kind, payload, reason):
    with pytest.raises(Rejected) as exc:
        decode_frame(message(kind, payload), limited.for_ingest())
    assert exc.value.reason == reason, exc.value.detail
    assert exc.value.detail or reason == "bad_envelope"


@pytest.mark.parametrize(("kind", "has_pose"), [("drone_frame", True), ("cone_frame", False)])
def test_good_frame_decodes_with_pose_and_quality(config, kind, has_pose):
    got = decode_frame(message(kind, envelope.encode(HEADER | {"mission_id": "M1"}, GOOD)),
                       config.for_ingest())
    f = got.frame
    assert (f.sha256, f.ts, f.width, f.height, f.bytes) == (sha256_of(GOOD), NOW, 640, 480, len(GOOD))
    assert (f.pose is not None) is has_pose
    if has_pose:
        assert (f.pose.alt_m, f.pose.hfov_deg, f.mission_id) == (40.0, 84.0, "M1")
    assert f.sharpness > 0 and 0 < f.brightness < 255 and f.fit_as_evidence is True
    assert got.image == GOOD


def test_frames_over_mqtt_reach_store_and_queue_and_bad_ones_are_kept(config, db, collector):
    prefix = config.mqtt.topic_prefix
    good = [jpeg(seed=i) for i in range(3)]
    # drone frames a minute before the cone frame of the same image (HEADER's NOW): never
    # the same (sha256, ts), whatever second the test runs at
    messages = [(frame_topic(prefix, "drone", "UAV-02"), envelope.encode(
                    HEADER | {"ts": (NOW - timedelta(minutes=1)).replace(second=i).isoformat()}, g))
                for i, g in enumerate(good)]
    messages.append(messages[0])  # a redelivery: stored once
    messages.append((frame_topic(prefix, "cone", "CC-001-1"), envelope.encode(HEADER, good[0])))
    bad = [(frame_topic(prefix, "drone", "UAV-02"), payload)
           for name, kind, payload, _ in BAD if kind == "drone_frame"]
    bad.append((frame_topic(prefix, "cone", "UAV-02"), envelope.encode(HEADER, good[1])))
    with FramePublisher(config.mqtt.url, f"{config.mqtt.client_id}-pub") as pub:
        pub.publish_many(messages + bad)

    def settled():
        with db.connection() as conn:
            n_frames = conn.execute("SELECT count(*) FROM frames").fetchone()[0]
            n_dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        print(f'frames {n_frames}/4, dead letters {n_dead}/{len(bad)}; {collector.stats()}')
        return n_frames == 4 and n_dead == len(bad)

    wait_until(settled)
    store = EvidenceStore(config.evidence_dir)
    with db.connection() as conn:
        rows = conn.execute("SELECT sha256, source_kind, source_id, status, alt_m FROM frames "
                            "ORDER BY source_kind, ts").fetchall()
        letters = conn.execute("SELECT reason, payload FROM dead_letters ORDER BY id").fetchall()
    assert [(r[1], r[2], r[3]) for r in rows] == [("cone", "CC-001-1", "pending")] + \
        [("drone", "UAV-02", "pending")] * 3
    assert rows[0][4] is None and rows[1][4] == 40.0
    for sha, *_ in rows:
        assert sha256_of(store.get(sha)) == sha
    expected = [reason for _, kind, _, reason in BAD if kind == "drone_frame"] + ["wrong_device_kind"]
    assert sorted(r for r, _ in letters) == sorted(expected)
    assert sorted(bytes(p) for _, p in letters) == sorted(p for _, p in bad)  # byte for byte
    with db.connection() as conn:
        assert frames_repo.status_counts(conn)["pending"] == 4


@pytest.mark.parametrize(
    ("name", "change", "fit", "reason"),
    [
        ("as_flown", lambda img: img, True, None),
        ("out_of_focus", lambda img: cv2.GaussianBlur(img, (0, 0), 5), False, "blurred"),
        ("dusk", lambda img: (img * 0.2).astype(np.uint8), False, "too_dark"),
        ("thumbnail", lambda img: cv2.resize(img, (200, 150)), False, "too_small"),
    ],
)
def test_unfit_frames_are_queued_and_marked_with_the_reason(config, registry, name, change, fit,
                                                            reason):
    from simulators.drone import street_pass

    (f,) = street_pass(registry, "ST-004", stalls=1, seed=1, max_frames=1).frames
    image = cv2.imencode(".jpg", change(f.rendered.image), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    got = decode_frame(message("drone_frame", envelope.encode(f.header, image.tobytes())),
                       config.for_ingest())
    assert got.frame.fit_as_evidence is fit
    if reason is None:
        assert got.frame.unfit_reason is None
    else:
        assert f"{reason}: " in got.frame.unfit_reason
