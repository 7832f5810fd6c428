"""The scene renderer: camera geometry, truth boxes, determinism, occlusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from citywatch import config as config_mod
from domain.geo import GONGSHU, LocalFrame
from domain.registry import load as load_registry
from simulators import scenes as S

SHARED_CLASSES = (
    "street_stall", "garbage_pile", "bare_soil", "covered_soil", "muck_truck_open",
    "muck_truck_covered", "person", "vehicle", "cone_upright", "cone_fallen", "worker_helmet",
    "worker_no_helmet", "excavator", "fence",
)


def test_classes_are_the_shared_list_in_order():
    assert S.CLASSES == SHARED_CLASSES
    assert S.AERIAL_CLASSES + S.CONE_CLASSES == SHARED_CLASSES


def _expected_nadir_pixel(pose: S.CameraPose, east: float, north: float) -> tuple[float, float]:
    """The camera model written out by hand for a nadir view: image up = heading."""
    f = (pose.width / 2) / math.tan(math.radians(pose.hfov_deg / 2))
    de, dn = east - pose.east_m, north - pose.north_m
    h = math.radians(pose.heading_deg)
    ahead = de * math.sin(h) + dn * math.cos(h)  # metres along the heading
    right = de * math.cos(h) - dn * math.sin(h)  # metres to the right of it
    return pose.width / 2 + f * right / pose.alt_m, pose.height / 2 - f * ahead / pose.alt_m


@pytest.mark.parametrize(
    "heading, east, north, cls",
    [
        (0.0, 0.0, 0.0, "vehicle"),
        (0.0, 30.0, -20.0, "vehicle"),
        (0.0, -60.0, 25.0, "street_stall"),
        (90.0, 30.0, -20.0, "vehicle"),
        (90.0, 10.0, 40.0, "muck_truck_covered"),
        (225.0, -35.0, 12.0, "street_stall"),
        (330.0, 50.0, 20.0, "garbage_pile"),
    ],
)
def test_nadir_box_centre_is_where_the_camera_model_puts_it(heading, east, north, cls):
    pose = S.CameraPose(5.0, -3.0, 100.0, heading, -90.0, 84.0, 1280, 720)
    obj = S.SceneObject(cls, pose.east_m + east, pose.north_m + north, yaw_deg=0.0)
    out = S.render_aerial([obj], pose, seed=11, trees=0)
    assert len(out.boxes) == 1
    box = out.boxes[0]
    x, y = _expected_nadir_pixel(pose, obj.east_m, obj.north_m)
    # the box is the object's projected footprint; at nadir its centre is the object's
    # centre up to the irregular outline of piles (a fraction of the object's size)
    tol = 0.2 * max(box.x2 - box.x1, box.y2 - box.y1) + 1.0
    assert abs((box.x1 + box.x2) / 2 - x) < tol
    assert abs((box.y1 + box.y2) / 2 - y) < tol
    assert (box.east_m, box.north_m, box.object_index, box.cls) == (obj.east_m, obj.north_m, 0, cls)


@pytest.mark.parametrize("east, expected_x", [(89.0, 1280 * (0.5 + 0.5 * 89 / 90.04)),
                                              (-89.0, 1280 * (0.5 - 0.5 * 89 / 90.04))])
def test_nadir_at_100m_with_84deg_hfov_sees_90m_to_each_side(east, expected_x):
    pose = S.CameraPose(0.0, 0.0, 100.0, 0.0, -90.0, 84.0, 1280, 720)
    x, y = pose.project_ground(east, 0.0)
    assert x == pytest.approx(expected_x, abs=0.5)
    assert y == pytest.approx(360.0)
    assert pose.pixel_to_ground(1280.0, 360.0)[0] == pytest.approx(100 * math.tan(math.radians(42)))


@pytest.mark.parametrize(
    "pose, pixel",
    [
        (S.CameraPose(0, 0, 100, 0, -45, 84, 1280, 720), (640.0, 360.0)),
        (S.CameraPose(10, 20, 60, 120, -60, 70, 640, 480), (100.0, 400.0)),
        (S.CameraPose(-5, 5, 30, 300, -90, 90, 800, 600), (10.0, 590.0)),
    ],
)
def test_pixel_to_ground_inverts_projection(pose, pixel):
    east, north = pose.pixel_to_ground(*pixel)
    assert pose.project_ground(east, north) == pytest.approx(pixel, abs=1e-6)


def test_oblique_optical_axis_hits_the_ground_ahead():
    pose = S.CameraPose(0.0, 0.0, 100.0, 0.0, -45.0, 84.0, 1280, 720)
    assert pose.pixel_to_ground(640.0, 360.0) == pytest.approx((0.0, 100.0), abs=1e-6)
    pose_east = S.CameraPose(0.0, 0.0, 100.0, 90.0, -45.0, 84.0, 1280, 720)
    assert pose_east.pixel_to_ground(640.0, 360.0) == pytest.approx((100.0, 0.0), abs=1e-6)
    # at -45 the top row still sees ground (half the vertical FOV is 26.9 deg); at -20
    # it looks 6.9 deg above the horizon and never meets the ground
    assert pose.pixel_to_ground(640.0, 0.0) is not None
    shallow = S.CameraPose(0.0, 0.0, 100.0, 0.0, -20.0, 84.0, 1280, 720)
    assert shallow.pixel_to_ground(640.0, 0.0) is None
    assert shallow.project_ground(0.0, -1000.0) is None  # behind the camera


def test_box_covers_what_was_drawn():
    pose = S.CameraPose(0.0, 0.0, 40.0, 30.0, -90.0, 70.0, 640, 480)
    obj = S.SceneObject("street_stall", 4.0, -3.0, 15.0)
    look = S.Look(noise_sigma=0.0, jpeg_quality=100)
    empty = S.render_aerial([], pose, seed=3, trees=0, look=look).image.astype(int)
    full = S.render_aerial([obj], pose, seed=3, trees=0, look=look)
    box = full.boxes[0]
    changed = np.abs(full.image.astype(int) - empty).sum(axis=2) > 30
    ys, xs = np.nonzero(changed)
    inside = ((xs >= box.x1 - 2) & (xs <= box.x2 + 2) & (ys >= box.y1 - 2) & (ys <= box.y2 + 2))
    # the shadow falls outside the box; the object itself fills most of it
    assert inside.sum() > 0.8 * (box.x2 - box.x1) * (box.y2 - box.y1)


@pytest.mark.parametrize(
    "east, yaw, visible",
    [
        (0.0, 0.0, True),
        (500.0, 0.0, False),  # far outside the footprint
        (-38.0, 90.0, False),  # 8.8 m long across the left edge, 27 % inside
        (-33.0, 90.0, True),  # 84 % inside: kept, clipped at the edge
    ],
)
def test_objects_outside_the_view_get_no_box(east, yaw, visible):
    pose = S.CameraPose(0.0, 0.0, 40.0, 0.0, -90.0, 84.0, 640, 480)
    assert pose.pixel_to_ground(0.0, 240.0)[0] == pytest.approx(-36.0, abs=0.1)
    obj = S.SceneObject("muck_truck_open", east, 0.0, yaw)
    out = S.render_aerial([obj], pose, seed=5, trees=0)
    assert bool(out.boxes) is visible
    if visible and east < -30:
        assert out.boxes[0].x1 == 0.0


@pytest.mark.parametrize("make", [S.random_aerial_scene, S.random_cone_scene])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scenes_are_deterministic_and_boxes_lie_inside(make, seed):
    scene = make(np.random.default_rng(seed), width=320, height=240)
    again = make(np.random.default_rng(seed), width=320, height=240)
    assert scene == again
    a = S.render_scene(scene, seed=seed)
    b = S.render_scene(scene, seed=seed)
    assert np.array_equal(a.image, b.image)
    assert a.boxes == b.boxes
    assert a.image.shape == (240, 320, 3) and a.image.dtype == np.uint8
    assert a.boxes, "a random scene should show something"
    for box in a.boxes:
        assert 0 <= box.x1 < box.x2 <= 320 and 0 <= box.y1 < box.y2 <= 240
        assert box.cls in S.CLASSES
        cls, *xywh = box.yolo_line(320, 240).split()
        assert int(cls) == S.CLASS_ID[box.cls]
        assert all(0.0 <= float(v) <= 1.0 for v in xywh)
    other = S.render_scene(scene, seed=seed + 100)
    assert not np.array_equal(a.image, other.image)


def test_world_seed_keeps_the_ground_between_frames():
    """Two frames of one flight (same world seed, different frame seeds) show the same city."""
    pose = S.CameraPose(0.0, 0.0, 60.0, 0.0, -90.0, 84.0, 320, 240)
    look = S.Look(noise_sigma=0.0, jpeg_quality=100)
    a = S.render_aerial([], pose, seed=1, world_seed=9, trees=0, look=look).image.astype(int)
    b = S.render_aerial([], pose, seed=2, world_seed=9, trees=0, look=look).image.astype(int)
    c = S.render_aerial([], pose, seed=1, world_seed=10, trees=0, look=look).image.astype(int)
    assert np.abs(a - b).mean() < np.abs(a - c).mean()


def test_cone_view_boxes_and_occlusion():
    pose = S.CameraPose(0.0, 0.0, 4.0, 0.0, -18.0, 70.0, 640, 480)
    objects = [
        S.SceneObject("cone_upright", -1.5, 9.0),
        S.SceneObject("worker_helmet", 1.5, 12.0),
        S.SceneObject("excavator", 0.0, 14.0, 90.0),
        S.SceneObject("cone_upright", 0.0, 17.0),  # right behind the excavator
    ]
    out = S.render_cone(objects, width=640, height=480, seed=4, pose=pose, distractors=False)
    seen = {b.object_index: b for b in out.boxes}
    assert set(seen) == {0, 1, 2}
    # the nearer cone stands lower in the image than the farther worker's feet
    assert seen[0].y2 > seen[1].y2
    # a cone's base sits where the camera model projects its ground point
    x, y = pose.project_ground(-1.5, 9.0)
    assert seen[0].x1 < x < seen[0].x2
    assert abs(seen[0].y2 - y) < 3.0


def test_cone_view_rejects_drone_classes():
    with pytest.raises(S.SceneError, match="not drawn in cone-camera views"):
        S.render_cone([S.SceneObject("street_stall", 0.0, 10.0)], width=320, height=240, seed=1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: S.SceneObject("tank", 0, 0), "unknown class 'tank'"),
        (lambda: S.SceneObject("vehicle", 0, 0, length_m=-1.0), "length_m must be > 0"),
        (lambda: S.CameraPose(0, 0, -5.0), "alt_m must be above ground"),
        (lambda: S.CameraPose(0, 0, 50.0, gimbal_pitch_deg=10.0), "gimbal_pitch_deg must be in"),
        (lambda: S.CameraPose(0, 0, 50.0, hfov_deg=0.0), "hfov_deg must be in"),
    ],
)
def test_bad_scene_input_is_a_clear_error(make, message):
    with pytest.raises(S.SceneError, match=message):
        make()


def test_streets_from_the_registry_render_in_local_metres():
    config = config_mod.load(env={})
    registry = load_registry(config.resolve(config.registry.directory))
    frame = LocalFrame(*GONGSHU)
    streets = S.streets_from_registry(registry.streets, frame)
    assert len(streets) == len(registry.streets) > 0
    street = streets[0]
    (e0, n0), (e1, n1) = street.points[0], street.points[-1]
    assert street.half_width_m == 6.0 and street.pavement_m == 4.0
    mid = ((e0 + e1) / 2, (n0 + n1) / 2)
    pose = S.CameraPose(mid[0], mid[1], 50.0, 0.0, -90.0, 84.0, 320, 240)
    look = S.Look(noise_sigma=0.0, jpeg_quality=100)
    img = S.render_aerial([], pose, streets=streets, seed=1, trees=0, look=look).image
    # the carriageway under the camera is asphalt, dark and grey, between the centre line
    # and the lane line (1.5 m north of the centre line, 5 px at this height)
    centre = img[112:117, 100:220].astype(int)
    assert centre.mean() < 120
    assert np.ptp(centre.mean(axis=(0, 1))) < 30


# ---------------------------------------------------------------------------------------
# domain randomisation (training sets only)


@pytest.mark.parametrize(
    "style, clutter, empty",
    [("handheld", True, False), ("handheld", False, False), ("pole", True, False),
     ("pole", True, True), ("handheld", True, True)],
)
@pytest.mark.parametrize("seed", [3, 4])
def test_randomised_cone_scenes_are_deterministic_and_labelled_inside(style, clutter, empty, seed):
    make = lambda: S.random_cone_scene(np.random.default_rng(seed), width=320, height=240,  # noqa: E731
                                       style=style, clutter=clutter, empty=empty)
    scene = make()
    assert scene == make()
    assert (scene.clutter is not None) is clutter
    a, b = S.render_scene(scene, seed=seed), S.render_scene(scene, seed=seed)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes
    if empty:
        assert scene.objects == () and a.boxes == []  # a hard negative: nothing to find
    for box in a.boxes:
        assert 0 <= box.x1 < box.x2 <= 320 and 0 <= box.y1 < box.y2 <= 240
        assert box.cls in S.CONE_CLASSES


def test_handheld_views_are_low_and_close():
    poses = [S.random_cone_scene(np.random.default_rng(s), style="handheld").pose for s in range(40)]
    assert min(p.alt_m for p in poses) < 1.0 and max(p.alt_m for p in poses) > 3.0
    assert any(p.alt_m < 2.0 and p.gimbal_pitch_deg > -10 for p in poses)  # nearly level, on foot
    with pytest.raises(S.SceneError, match="style must be one of"):
        S.random_cone_scene(np.random.default_rng(0), style="satellite")


def test_distractors_hide_what_stands_behind_them():
    """An unlabelled barrel between the camera and a cone hides it: no truth box left."""
    from simulators.scenes.randomise import Clutter, Distractor

    pose = S.CameraPose(0.0, 0.0, 1.2, 0.0, -5.0, 60.0, 640, 480)
    cone = [S.SceneObject("cone_upright", 0.0, 8.0)]
    clear = S.render_cone(cone, width=640, height=480, seed=2, pose=pose, distractors=False)
    hidden = S.render_cone(cone, width=640, height=480, seed=2, pose=pose, distractors=False,
                           clutter=Clutter((Distractor("barrel", 0.0, 4.0, 1.3),)))
    assert len(clear.boxes) == 1 and hidden.boxes == []


@pytest.mark.parametrize("k1", [-0.1, 0.2])
def test_lens_distortion_moves_boxes_with_the_image(k1):
    from simulators.scenes.randomise import _distort_points, lens_distort

    img = np.zeros((240, 320, 3), np.uint8)
    img[150:190, 250:290] = 255  # a white square off-centre
    box = S.TruthBox("cone_upright", 250.0, 150.0, 290.0, 190.0, 0.0, 0.0, 0)
    out, (moved,) = lens_distort(img, [box], k1)
    ys, xs = np.nonzero(out[..., 0] > 127)
    # the box is refitted to where the square's pixels went (to a pixel or so)
    assert abs(xs.min() - moved.x1) <= 1.5 and abs(xs.max() + 1 - moved.x2) <= 1.5
    assert abs(ys.min() - moved.y1) <= 1.5 and abs(ys.max() + 1 - moved.y2) <= 1.5
    # the centre stays put, and corners stay corners: nothing outside the image (no
    # unlabelled mirrored copy of an object) is pulled in at the edges
    fixed = _distort_points(np.array([[160.0, 120.0], [0.0, 0.0], [320.0, 240.0]]), 320, 240, k1)
    assert fixed[0] == pytest.approx([160, 120])
    if k1 > 0:
        assert fixed[1:] == pytest.approx(np.array([[0, 0], [320, 240]]), abs=0.5)
