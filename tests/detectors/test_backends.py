"""Detector backends: the ONNX Runtime backend against ultralytics on the same .onnx and
the same frames, its letterbox against ultralytics' own, what it finds in rendered scenes,
how backends are configured and refused, and an install without torch.

Agreement measured on the committed default model (simulated drone and cone-camera frames,
batches of one shape and of mixed shapes, confidence 0.25 and 0.05): every detection of
one backend has one of the other with the same class, IoU >= 0.99999 and a confidence
equal to 1e-6; the test holds them to IoU >= 0.99 and 0.001 (both backends run the same
onnxruntime session; only pre- and post-processing differ, and those must match)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from citywatch import config as config_mod
from detectors.backends.onnxrt import OnnxRuntimeConfig, letterbox
from detectors.backends.yolo import UltralyticsConfig
from detectors.base import (
    BACKENDS,
    Backend,
    Detections,
    DetectorError,
    create_detector,
    parse_names,
)
from simulators.cone import cone_frames
from simulators.drone import street_pass
from simulators.scenes import CLASSES

from .conftest import DEFAULT_ONNX, PROJECT_ROOT, needs_ultralytics

MIN_IOU, MAX_CONFIDENCE_DIFF = 0.99, 0.001


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def batches(registry) -> list[list[np.ndarray]]:
    """Drone frames, cone-camera frames, and a batch of three different shapes."""
    drone = [_decode(f.jpeg) for f in street_pass(registry, "ST-004", stalls=4, seed=4,
                                                  max_frames=6).frames]
    cone = [_decode(f.jpeg) for scenario in ("no_helmet", "cone_fallen", "fence_missing")
            for f in cone_frames(registry, "P-002", scenario=scenario)]
    mixed = [cv2.resize(drone[2], (500, 333)), cv2.resize(cone[0], (300, 400)), drone[3]]
    return [drone, cone, mixed]


@pytest.fixture(scope="module")
def onnxruntime_default():
    return create_detector(OnnxRuntimeConfig(weights=str(DEFAULT_ONNX)))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def unmatched(ours: Detections, theirs: Detections) -> list[str]:
    """Detections of `ours` without a partner in `theirs` (same class, IoU and confidence
    within the tolerance; each partner used once), described."""
    free = set(range(len(theirs)))
    missing = []
    for i in range(len(ours)):
        partner = next((j for j in sorted(free, key=lambda j: -iou(ours.xyxy[i], theirs.xyxy[j]))
                        if theirs.class_id[j] == ours.class_id[i]
                        and iou(ours.xyxy[i], theirs.xyxy[j]) >= MIN_IOU
                        and abs(theirs.confidence[j] - ours.confidence[i]) <= MAX_CONFIDENCE_DIFF),
                       None)
        if partner is None:
            missing.append(f"{ours.names[ours.class_id[i]]} {ours.confidence[i]:.3f} "
                           f"{np.round(ours.xyxy[i], 1).tolist()}")
        else:
            free.discard(partner)
    return missing


@pytest.mark.parametrize("confidence", [0.25, 0.05])
def test_onnxruntime_gives_the_detections_of_ultralytics_on_the_same_onnx(batches, confidence):
    needs_ultralytics()
    ours = create_detector(OnnxRuntimeConfig(weights=str(DEFAULT_ONNX), confidence=confidence))
    theirs = create_detector(UltralyticsConfig(weights=str(DEFAULT_ONNX), confidence=confidence))
    assert ours.names == theirs.names and ours.model == theirs.model
    total = 0
    for batch in batches:
        for a, b in zip(ours.detect(batch), theirs.detect(batch), strict=True):
            assert len(a) == len(b)
            assert unmatched(a, b) == [] and unmatched(b, a) == []
            total += len(a)
    assert total > 30  # the comparison compared something


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (333, 500), (1080, 1920), (17, 3000)])
@pytest.mark.parametrize("auto", [True, False])
def test_letterbox_is_ultralytics_letterbox(shape, auto):
    needs_ultralytics()
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours, _ = letterbox(image, (640, 640), auto=auto, stride=32)
    theirs = LetterBox((640, 640), auto=auto, stride=32)(image=image)
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


def test_onnxruntime_finds_what_the_renderer_drew(registry, onnxruntime_default):
    """Without ultralytics to compare with: the trained model on the ONNX Runtime backend
    finds the rendered worker without helmet and the street stalls, where they were drawn."""
    (cone,) = cone_frames(registry, "P-003", scenario="no_helmet", seed=6)
    flight = street_pass(registry, "ST-004", stalls=4, seed=4, max_frames=6)
    frames = [(cone.jpeg, cone.rendered.boxes)] + [(f.jpeg, f.rendered.boxes)
                                                    for f in flight.frames]
    found = onnxruntime_default.detect([_decode(jpeg) for jpeg, _ in frames])
    hits = 0
    for (_, truth), dets in zip(frames, found, strict=True):
        for box in truth:
            if box.cls not in ("worker_no_helmet", "street_stall"):
                continue
            xyxy = np.array([box.x1, box.y1, box.x2, box.y2])
            assert any(dets.names[c] == box.cls and iou(xyxy, d) > 0.5
                       for d, c in zip(dets.xyxy, dets.class_id, strict=True)), box
            hits += 1
    assert hits >= 3
    assert onnxruntime_default.names == CLASSES  # from the model's metadata


def test_empty_and_bad_input(onnxruntime_default):
    assert onnxruntime_default.detect([]) == []
    with pytest.raises(DetectorError, match=r"BGR uint8 arrays of shape \(h, w, 3\)"):
        onnxruntime_default.detect([np.zeros((48, 64), np.uint8)])


@pytest.mark.parametrize("backend, message", [
    (OnnxRuntimeConfig(weights=str(DEFAULT_ONNX.with_suffix(".pt"))),
     "the onnxruntime backend reads .onnx weights, but got citywatch-default.pt"),
    (OnnxRuntimeConfig(weights="nowhere/model.onnx"), "model weights not found: nowhere/model.onnx"),
    (OnnxRuntimeConfig(weights=str(DEFAULT_ONNX), providers=["NoSuchExecutionProvider"]),
     "execution providers not available here: NoSuchExecutionProvider"),
    (UltralyticsConfig(weights="model.tflite"),
     "the ultralytics backend reads .pt or .onnx weights, but got model.tflite"),
])
def test_backend_refuses_what_it_cannot_run(backend, message):
    with pytest.raises(DetectorError, match=message.replace(".", r"\.")):
        create_detector(backend)


def test_a_file_that_is_no_model_is_refused(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="cannot load"):
        create_detector(OnnxRuntimeConfig(weights=str(bad)))


@pytest.mark.parametrize("text, expected", [
    ("{0: 'a', 1: 'b'}", ("a", "b")),
    ({1: "b", 0: "a"}, ("a", "b")),
    (["a", "b"], ("a", "b")),
    ("{0: 'a', 2: 'c'}", None),
    ("not a dict", None),
])
def test_class_names_from_model_metadata(text, expected):
    if expected is None:
        with pytest.raises(DetectorError, match="names"):
            parse_names(text)
    else:
        assert parse_names(text) == expected


@pytest.mark.parametrize("doc, problem", [
    ({"backend": {"type": "tensorrt"}},
     "detectors.backend.type: Input tag 'tensorrt' found using 'type' does not match any of "
     "the expected tags: 'onnxruntime', 'ultralytics'"),
    ({"backend": {"type": "onnxruntime", "device": "cuda:0"}},
     "detectors.backend.device: unknown key"),
    ({"backend": {"type": "ultralytics", "threads": 2}}, "detectors.backend.threads: unknown key"),
    ({"backend": {"type": "onnxruntime", "confidence": 1.5}},
     "detectors.backend.confidence: Input should be less than 1"),
    ({"backend": {"weights": "x.onnx"}}, "detectors.backend: Unable to extract tag"),
    ({"weights": "x.onnx"}, "detectors.weights: unknown key"),
])
def test_config_refuses_a_wrong_backend_or_option_at_its_yaml_path(doc, problem):
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate({"detectors": doc}, "test.yaml")
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_default_backend_is_onnxruntime_on_the_default_onnx():
    backend = config_mod.validate({}).detectors.backend
    assert (backend.type, backend.weights) == ("onnxruntime",
                                               "detectors/models/citywatch-default.onnx")
    chosen = config_mod.validate({"detectors": {"backend": {"type": "ultralytics"}}})
    assert isinstance(chosen.detectors.backend, UltralyticsConfig)


def test_detectors_are_built_through_the_registry(monkeypatch):
    built = []
    real = BACKENDS["onnxruntime"].create

    def recording(config):
        built.append(config.weights)
        return real(config)

    monkeypatch.setitem(BACKENDS, "onnxruntime", Backend("onnxruntime", OnnxRuntimeConfig,
                                                         recording))
    detector = create_detector(OnnxRuntimeConfig(), project_root=PROJECT_ROOT)
    assert built == [str(DEFAULT_ONNX)] and detector.names == CLASSES
    monkeypatch.delitem(BACKENDS, "onnxruntime")
    with pytest.raises(DetectorError, match="unknown detector backend 'onnxruntime'"):
        create_detector(OnnxRuntimeConfig())


BASE_PARTS = ["citywatch", "domain", "ingest", "detectors", "rules", "storage", "simulators",
              "review"]
HEAVY = ["torch", "torchvision", "ultralytics", "dronekit"]


def test_base_import_path_and_onnxruntime_detection_need_no_torch():
    """Every module of the parts a base install runs imports, and the ONNX Runtime backend
    detects, without importing torch, ultralytics or dronekit."""
    script = f"""
import importlib, pkgutil, sys
import numpy as np
from citywatch.cli import build_parser
build_parser()
for name in {[p for p in BASE_PARTS if (PROJECT_ROOT / p / "__init__.py").is_file()]!r}:
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
from detectors.backends.onnxrt import OnnxRuntimeConfig
from detectors.base import create_detector
detector = create_detector(OnnxRuntimeConfig(weights={str(DEFAULT_ONNX)!r}))
assert len(detector.detect([np.full((480, 640, 3), 90, np.uint8)])) == 1
print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.slow
def test_ultralytics_settings_stay_in_the_data_directory_and_quiet(tmp_path):
    """First import on a machine: no settings in the home folder, none pointing into the
    checkout, no banner on stdout or stderr, no "Loading ..." line for a model."""
    needs_ultralytics()
    home, data = tmp_path / "home", tmp_path / "data"
    script = f"""
import numpy as np
from pathlib import Path
from detectors.backends.yolo import UltralyticsConfig
from detectors.base import create_detector
from detectors.offline import use_settings_dir
use_settings_dir(Path({str(data)!r}))
detector = create_detector(UltralyticsConfig(weights={str(DEFAULT_ONNX)!r}))
detector.detect([np.full((480, 640, 3), 90, np.uint8)])
"""
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_CONFIG_DIR",
                                                           "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert "Settings" not in out.stderr and "Loading" not in out.stderr, out.stderr
    assert not (home / ".config").exists()
    settings = json.loads((data / "Ultralytics" / "settings.json").read_text())
    for key in ("datasets_dir", "weights_dir", "runs_dir"):
        assert Path(settings[key]).is_relative_to(data), (key, settings[key])
    assert settings["sync"] is False


def test_config_check_loads_the_model_and_rules_check_its_classes(tmp_path):
    """`citywatch config check` says when the configured weights cannot be loaded;
    `citywatch rules check` refuses a rule naming a class the model does not have."""
    cfg = tmp_path / "citywatch.yaml"
    cfg.write_text("detectors:\n  backend:\n    type: onnxruntime\n    weights: nowhere.onnx\n")
    out = subprocess.run([sys.executable, "-m", "citywatch.cli", "config", "check", str(cfg)],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert out.returncode == 2 and "detectors.backend: model weights not found" in out.stderr

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stalls.yaml").write_text(
        "rules:\n- {id: drone.x, title: t, kind: detection, subject_type: merchant,\n"
        "   source_kinds: [drone], classes: [street_stall, food_cart]}\n")
    cfg.write_text(f"rules:\n  directory: {rules}\n")
    out = subprocess.run([sys.executable, "-m", "citywatch.cli", "-c", str(cfg), "rules",
                          "check"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                         timeout=120)
    assert out.returncode == 2
    assert "stalls.yaml: rules[0].classes[1]: unknown detection class 'food_cart'" in out.stderr


def test_one_opencv_build():
    """citywatch depends on the OpenCV distribution ultralytics requires, and on no other,
    so no environment holds two builds writing the same cv2 package."""
    import importlib.metadata
    import re
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values()
                                            for r in reqs)]
    opencv = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in declared if "opencv" in r}
    assert opencv == {"opencv-python"}
    try:
        ultralytics_requires = importlib.metadata.requires("ultralytics") or []
    except importlib.metadata.PackageNotFoundError:
        return
    theirs = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in ultralytics_requires
              if r.startswith("opencv") and "extra ==" not in r}
    assert theirs == opencv


def test_a_fixed_size_export_gets_batches_of_its_size(tmp_path, batches, onnxruntime_default):
    """An export with a fixed batch and image size: images letterboxed to that size, the
    batch padded to it; the detections are those of the dynamic export on the same input."""
    onnx = pytest.importorskip("onnx", reason="the onnx package comes with the `yolo` extra")
    model = onnx.load(str(DEFAULT_ONNX))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (2, 3, 640, 640),
                          strict=True):
        dim.dim_value = value
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    detector = create_detector(OnnxRuntimeConfig(weights=str(fixed)))
    mixed = batches[2]  # three shapes: the dynamic export letterboxes them to 640x640 too
    ours, reference = detector.detect(mixed), onnxruntime_default.detect(mixed)
    assert len(ours) == 3 and sum(map(len, ours)) > 0
    for a, b in zip(ours, reference, strict=True):
        assert np.allclose(a.xyxy, b.xyxy, atol=0.01) and np.array_equal(a.class_id, b.class_id)


@pytest.mark.slow
def test_run_refuses_rules_naming_classes_its_model_lacks(config, tmp_path):
    """`citywatch run` with detector workers and the rule engine in one process checks
    the rules against the workers' model before any stage starts."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stalls.yaml").write_text(
        "rules:\n- {id: drone.x, title: t, kind: detection, subject_type: merchant,\n"
        "   source_kinds: [drone], classes: [food_cart]}\n")
    config.rules.directory = str(rules)
    cfg = tmp_path / "citywatch.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    out = subprocess.run([sys.executable, "-m", "citywatch.cli", "-c", str(cfg), "run",
                          "--only", "detect", "--only", "rules"], capture_output=True,
                         text=True, cwd=PROJECT_ROOT, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "stalls.yaml: rules[0].classes[0]: unknown detection class 'food_cart'" in out.stderr
