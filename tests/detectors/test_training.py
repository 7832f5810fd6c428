"""Dataset rendering, the train -> export -> eval cycle, and the committed default model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from detectors import training
from simulators.scenes import CLASSES

from .conftest import needs_ultralytics

# Held-out seeds for the tests: never used to train the committed model (seed 1) nor to
# write its report (seed 777).
TEST_SEED = 31337


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    spec = training.DatasetSpec({"train": 12, "val": 4}, seed=5, width=256, height=192,
                                min_box_px=3)
    return training.render_dataset(root, spec, workers=2)


def test_dataset_has_yolo_layout_and_valid_labels(tiny_dataset: Path):
    root = tiny_dataset.parent
    doc = yaml.safe_load(tiny_dataset.read_text())
    assert doc["names"] == dict(enumerate(CLASSES))
    assert (doc["train"], doc["val"]) == ("images/train", "images/val")
    assert training.check_dataset(tiny_dataset) == {"train": 12, "val": 4}
    images = sorted((root / "images" / "train").glob("*.jpg"))
    labels = sorted((root / "labels" / "train").glob("*.txt"))
    assert [p.stem for p in images] == [p.stem for p in labels]
    lines = [ln for p in labels for ln in p.read_text().splitlines()]
    assert len(lines) > 12  # several objects per image
    counts = doc["citywatch"]["instances"]["train"]
    assert sum(counts) == len(lines)
    assert counts[CLASSES.index("vehicle")] > 0 or counts[CLASSES.index("cone_upright")] > 0


def test_dataset_is_reproducible_from_its_seed(tiny_dataset: Path, tmp_path: Path):
    spec = training.DatasetSpec({"val": 4}, seed=5, width=256, height=192, min_box_px=3)
    again = training.render_dataset(tmp_path, spec, workers=1)
    for old in sorted((tiny_dataset.parent / "labels" / "val").glob("*.txt")):
        assert (again.parent / "labels" / "val" / old.name).read_text() == old.read_text()
    other = training.render_dataset(tmp_path / "other", training.DatasetSpec(
        {"val": 4}, seed=6, width=256, height=192, min_box_px=3), workers=1)
    assert any((other.parent / "labels" / "val" / p.name).read_text() != p.read_text()
               for p in (tiny_dataset.parent / "labels" / "val").glob("*.txt"))


def test_held_out_only_dataset_points_train_and_val_at_test(tmp_path: Path):
    spec = training.DatasetSpec({"test": 2}, seed=TEST_SEED, width=192, height=160)
    doc = yaml.safe_load(training.render_dataset(tmp_path, spec, workers=1).read_text())
    assert doc["test"] == doc["val"] == doc["train"] == "images/test"


@pytest.mark.parametrize(
    "label, problem",
    [
        ("14 0.5 0.5 0.1 0.1\n", "class '14' not in 0..13"),
        ("3 0.5 0.5 1.2 0.1\n", "outside [0, 1]"),
        ("3 0.5 0.5 0.1\n", "expected 5 fields, got 4"),
        ("car 0.5 0.5 0.1 0.1\n", "class 'car'"),
        (None, "missing"),
    ],
)
def test_check_dataset_names_bad_labels(tmp_path: Path, label, problem):
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "images" / "val" / "a.jpg").write_bytes(b"\xff\xd8")
    if label is not None:
        (tmp_path / "labels" / "val" / "a.txt").write_text(label)
    data = training.write_data_yaml(tmp_path, splits=["val"], names=CLASSES)
    with pytest.raises(training.TrainingError, match=problem.replace("[", r"\[").replace("(", r"\(")):
        training.check_dataset(data)


def test_unknown_split_is_refused(tmp_path: Path):
    with pytest.raises(training.TrainingError, match="splits must be among"):
        training.render_dataset(tmp_path, training.DatasetSpec({"holdout": 2}, seed=1))


@pytest.mark.slow
def test_train_export_eval_cycle(tiny_dataset: Path, tmp_path: Path):
    """One epoch from scratch on the tiny set, export to ONNX, evaluate both per class."""
    needs_ultralytics()
    settings = training.TrainSettings(epochs=1, imgsz=160, batch=4, workers=0)
    best = training.train(tiny_dataset, tmp_path / "run", settings)
    assert best.is_file() and best.stat().st_size > 1_000_000
    onnx = training.export_onnx(best, tmp_path / "tiny.onnx", imgsz=160)
    assert onnx == tmp_path / "tiny.onnx" and onnx.stat().st_size > 1_000_000
    reports = [training.evaluate(w, tiny_dataset, split="val", imgsz=160, batch=4)
               for w in (best, onnx)]
    md, js = training.write_reports(reports, tmp_path, stem="tiny-eval")
    for report in reports:
        assert report.images == 4
        assert report.classes, "per-class rows"
        names = {c.name for c in report.classes}
        assert names <= set(CLASSES)
        assert sum(c.instances for c in report.classes) == report.overall.instances > 0
        for c in [*report.classes, report.overall]:
            assert all(0.0 <= v <= 1.0 for v in (c.precision, c.recall, c.map50, c.map50_95))
    doc = json.loads(js.read_text())
    assert [Path(d["weights"]).suffix for d in doc] == [".pt", ".onnx"]
    assert "| class | images | instances | P | R | mAP50 | mAP50-95 |" in md.read_text()


@pytest.fixture(scope="module")
def fresh_held_out(tmp_path_factory) -> Path:
    spec = training.DatasetSpec({"test": 40}, seed=TEST_SEED, min_box_px=5)
    return training.render_dataset(tmp_path_factory.mktemp("heldout"), spec, workers=2)


@pytest.mark.slow
@pytest.mark.parametrize("weights", [training.DEFAULT_PT, training.DEFAULT_ONNX],
                         ids=["pt", "onnx"])
def test_committed_default_model_detects_fresh_scenes(weights: Path, fresh_held_out: Path):
    """The committed weights find what is in scenes rendered from a seed never used."""
    needs_ultralytics()
    report = training.evaluate(weights, fresh_held_out, split="test", imgsz=512, batch=8)
    assert math.isfinite(report.overall.map50)
    assert report.overall.map50 >= 0.7, report.to_markdown()
    assert report.overall.recall >= 0.6, report.to_markdown()
    by_name = {c.name: c for c in report.classes}
    for name in ("street_stall", "vehicle", "cone_upright"):
        assert by_name[name].map50 >= 0.6, report.to_markdown()


@pytest.mark.parametrize(
    "argv, code",
    [
        (["model", "dataset", "--seed", "3", "--val", "2", "--width", "192", "--height", "160"], 0),
        (["model", "dataset", "--seed", "3"], 2),  # nothing to render
        (["model", "eval", "missing.pt", "--data", "missing.yaml"], 2),
    ],
)
def test_citywatch_model_command(tmp_path: Path, capsys, argv, code):
    from citywatch.cli import main

    out = tmp_path / "ds"
    args = argv + ["--out", str(out)] if argv[1] == "dataset" else argv
    assert main(args) == code
    if code == 0:
        # a dataset with only a val split trains on it too (ultralytics wants both)
        assert training.check_dataset(out / "data.yaml") == {"train": 2, "val": 2}
    else:
        assert "error:" in capsys.readouterr().err
