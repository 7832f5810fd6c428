"""Georeferencing against known geometry (nadir and oblique) and its own inverse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.georef import Camera, GeorefError, pixels_to_wgs84
from domain.geo import LocalFrame, distance_m
from storage.frames import Pose

W, H = 4000, 3000


@pytest.mark.parametrize(
    ("alt", "heading", "pitch", "hfov", "pixel", "expected_en"),
    [
        # nadir, 100 m, 84 deg: the image spans +-90.04 m (100 * tan 42 deg) across
        (100, 0, -90, 84, (0, H / 2), (-90.04, 0.0)),
        (100, 0, -90, 84, (W, H / 2), (90.04, 0.0)),
        (100, 0, -90, 84, (W / 2, H / 2), (0.0, 0.0)),
        # nadir: the image top points along the heading
        (100, 0, -90, 84, (W / 2, 0), (0.0, 67.53)),
        (100, 90, -90, 84, (W / 2, 0), (67.53, 0.0)),
        (100, 90, -90, 84, (W, H / 2), (0.0, -90.04)),
        (100, 180, -90, 84, (W / 2, 0), (0.0, -67.53)),
        (50, 0, -90, 90, (W, H / 2), (50.0, 0.0)),
        # oblique: the image centre lands alt / tan(-pitch) ahead along the heading
        (100, 0, -45, 84, (W / 2, H / 2), (0.0, 100.0)),
        (100, 90, -30, 60, (W / 2, H / 2), (173.21, 0.0)),
        (100, 270, -60, 60, (W / 2, H / 2), (-57.74, 0.0)),
        # oblique, centre column bottom edge: the ray is pitched down by a further vfov/2
        (100, 0, -45, 90, (W / 2, H), (0.0, 100 / math.tan(math.radians(45 + 36.87)))),
    ],
)
def test_known_geometry(alt, heading, pitch, hfov, pixel, expected_en):
    ground = Camera(alt, heading, pitch, hfov, W, H).pixel_to_ground(*pixel)[0]
    assert ground == pytest.approx(expected_en, abs=0.01)


@pytest.mark.parametrize("pitch", [-90, -75, -45, -20])
@pytest.mark.parametrize("heading", [0, 37, 180, 301])
def test_ground_to_pixel_inverts_pixel_to_ground(pitch, heading):
    cam = Camera(80, heading, pitch, 70, 1280, 720)
    xs, ys = np.meshgrid(np.linspace(0, 1280, 7), np.linspace(360 if pitch > -30 else 0, 720, 5))
    ground = cam.pixel_to_ground(xs.ravel(), ys.ravel())
    back = cam.ground_to_pixel(ground[:, 0], ground[:, 1])
    assert np.allclose(back, np.stack([xs.ravel(), ys.ravel()], axis=1), atol=1e-6)


def test_ray_above_horizon_has_no_ground_point():
    cam = Camera(100, 0, -10, 90, 1000, 1000)
    assert np.isnan(cam.pixel_to_ground(500, 0)).all()  # 10 deg down, 45 deg half-FOV: sky
    assert not np.isnan(cam.pixel_to_ground(500, 1000)).any()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("alt_m", 0, "alt_m must be above ground"), ("hfov_deg", 180, "hfov_deg must lie"),
     ("gimbal_pitch_deg", 10, "must look down"), ("width", 0, "image size")],
)
def test_impossible_camera_is_refused(field, value, message):
    args = {"alt_m": 100, "heading_deg": 0, "gimbal_pitch_deg": -90, "hfov_deg": 84,
            "width": 640, "height": 480} | {field: value}
    with pytest.raises(GeorefError, match=message):
        Camera(**args)


def test_wgs84_positions_follow_the_local_frame():
    lat0, lon0 = 30.32, 120.15
    pose = Pose(lat0, lon0, 100, 90, -90, 84)
    (corner,) = pixels_to_wgs84(pose, W, H, np.array([[W / 2, 0]]))
    # heading east at nadir: the top edge centre is 67.53 m east of the drone
    assert distance_m(lat0, lon0, *corner) == pytest.approx(67.53, abs=0.05)
    e, n = LocalFrame(lat0, lon0).to_local(*corner)
    assert (e, n) == pytest.approx((67.53, 0.0), abs=0.05)


@pytest.mark.parametrize(
    ("alt", "heading", "pitch", "hfov", "size"),
    [(40, 0, -90, 84, (640, 480)), (80, 123, -90, 70, (1280, 720)),
     (60, 45, -60, 84, (640, 480)), (120, 300, -35, 90, (1920, 1080)),
     (4, 0, -18, 70, (640, 480))],
)
def test_agrees_with_the_renderers_camera(alt, heading, pitch, hfov, size):
    """Our inverse and the scene renderer's projection, written independently, agree."""
    from simulators.scenes import CameraPose

    w, h = size
    pose = CameraPose(0.0, 0.0, alt, heading, pitch, hfov, w, h)
    cam = Camera(alt, heading, pitch, hfov, w, h)
    rng = np.random.default_rng(1)
    for x, y in zip(rng.uniform(0, w, 40), rng.uniform(0, h, 40), strict=True):
        theirs = pose.pixel_to_ground(x, y)
        ours = cam.pixel_to_ground(x, y)[0]
        if theirs is None:
            assert np.isnan(ours).all()
            continue
        assert ours == pytest.approx(theirs, abs=1e-6 * max(1.0, abs(max(theirs, key=abs))))
        assert pose.project_ground(*ours) == pytest.approx((x, y), abs=1e-6)
