"""Procedural scenes with known ground truth: aerial drone views and cone-camera views.

One renderer serves two consumers: the training set of the default detection model and
the live drone / cone-camera simulators. Every rendered image comes with a `TruthBox` per
visible object: its pixel box and its true ground position, so detections can be checked
both in pixels and on the map.

The package is split by concern: `catalogue` (classes, sizes, the scene object and its
truth box), `camera` (the pinhole model the georeferencing code inverts), `raster`
(drawing helpers), `photo` (light, blur, noise, compression), `aerial` (drone views),
`cone` (cone-camera views of road works) and `randomise` (domain randomisation for
training sets: backgrounds, distractors, lens and sensor effects, hand-held photographs).
"""

from __future__ import annotations

from simulators.scenes.aerial import (
    AerialScene,
    Street,
    random_aerial_scene,
    render_aerial,
    streets_from_registry,
)
from simulators.scenes.camera import CameraPose
from simulators.scenes.catalogue import (
    AERIAL_CLASSES,
    CLASS_ID,
    CLASSES,
    CONE_CLASSES,
    DEFAULT_SIZE_M,
    HEIGHT_M,
    Rendered,
    SceneError,
    SceneObject,
    TruthBox,
)
from simulators.scenes.cone import ConeScene, random_cone_scene, render_cone
from simulators.scenes.photo import Look

__all__ = [
    "AERIAL_CLASSES", "CLASS_ID", "CLASSES", "CONE_CLASSES", "DEFAULT_SIZE_M", "HEIGHT_M",
    "AerialScene", "CameraPose", "ConeScene", "Look", "Rendered", "SceneError", "SceneObject",
    "Street", "TruthBox", "random_aerial_scene", "random_cone_scene", "render_aerial",
    "render_cone", "render_scene", "streets_from_registry",
]


def render_scene(scene: AerialScene | ConeScene, seed: int) -> Rendered:
    """Render a scene from `random_aerial_scene` or `random_cone_scene`."""
    if isinstance(scene, AerialScene):
        return render_aerial(scene.objects, scene.pose, streets=scene.streets, seed=seed,
                             world_seed=scene.world_seed, look=scene.look)
    return render_cone(scene.objects, width=scene.pose.width, height=scene.pose.height, seed=seed,
                       pose=scene.pose, road_half_width_m=scene.road_half_width_m,
                       world_seed=scene.world_seed, look=scene.look, clutter=scene.clutter)
