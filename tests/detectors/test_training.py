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


def test_randomised_dataset_mixes_views_negatives_and_portraits(tmp_path: Path):
    spec = training.DatasetSpec({"train": 40}, seed=8, width=192, height=144, min_box_px=2,
                                randomise=True)
    data = training.render_dataset(tmp_path, spec, workers=2)
    doc = yaml.safe_load(data.read_text())
    assert doc["citywatch"]["spec"]["randomise"] is True
    import cv2

    shapes = {cv2.imread(str(p)).shape[:2] for p in (tmp_path / "images" / "train").glob("*.jpg")}
    assert shapes == {(144, 192), (192, 144)}  # landscape, and phones held upright
    labels = [p.read_text() for p in (tmp_path / "labels" / "train").glob("*.txt")]
    assert any(not t for t in labels)  # empty roads: nothing to find
    ids = {int(line.split()[0]) for t in labels for line in t.splitlines()}
    assert CLASSES.index("cone_upright") in ids and ids & set(range(8))  # ground and aerial
    assert training.check_dataset(data) == {"train": 40, "val": 40}


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
    result = training.train(tiny_dataset, tmp_path / "run", settings)
    best = result.best
    assert best.is_file() and best.stat().st_size > 1_000_000
    assert result.transfer is None and result.epochs_done == 1  # from an architecture
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
    report = training.evaluate(weights, fresh_held_out, split="test", imgsz=640, batch=8)
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


# ---------------------------------------------------------------------------------------
# fine-tuning a city's own data


def _city_dataset(root: Path, n_train: int = 8, n_val: int = 4, seed: int = 21) -> Path:
    """A city's dataset in its own vocabulary: rendered road works relabelled as a city
    would label them (its own names and ids, cones and diggers only)."""
    spec = training.DatasetSpec({"train": n_train, "val": n_val}, seed=seed, width=320, height=240,
                                min_box_px=4, randomise=True)
    src = training.render_dataset(root / "src", spec, workers=1).parent
    city_ids = {CLASSES.index("cone_upright"): 0, CLASSES.index("excavator"): 1,
                CLASSES.index("worker_helmet"): 2}
    for split in ("train", "val"):
        (root / "city" / "images" / split).mkdir(parents=True)
        (root / "city" / "labels" / split).mkdir(parents=True)
        for img in sorted((src / "images" / split).glob("*.jpg")):
            (root / "city" / "images" / split / img.name).write_bytes(img.read_bytes())
            lines = []
            for line in (src / "labels" / split / f"{img.stem}.txt").read_text().splitlines():
                cid, *box = line.split()
                if int(cid) in city_ids:
                    lines.append(" ".join([str(city_ids[int(cid)]), *box]))
            (root / "city" / "labels" / split / f"{img.stem}.txt").write_text("\n".join(lines) + "\n")
    data = root / "city" / "data.yaml"
    data.write_text("path: .\ntrain: images/train\nval: images/val\n"
                    "names: {0: traffic_cone, 1: digger, 2: hard_hat}\n")
    return data


CITY_MAP = "# city name: citywatch class\ntraffic_cone: cone_upright\ndigger: excavator\nhard_hat: worker_helmet\n"


@pytest.mark.parametrize(
    "class_map, problem",
    [
        ("traffic_cone: cone_upright\ndigger: bulldozer\nhard_hat: null\n",
         r"map.yaml:2: 'bulldozer' \(for 'digger'\) is not a citywatch class"),
        ("traffic_cone: cone_upright\ndigger: excavator\n", r"no entry for 'hard_hat'"),
        ("traffic_cone: cone_upright\ndigger: excavator\nhard_hat: null\nlorry: vehicle\n",
         r"map.yaml:4: 'lorry' is not a class of"),
        ("traffic_cone: cone_upright\ntraffic_cone: cone_fallen\n", r"map.yaml:2: 'traffic_cone' is mapped twice"),
        ("- cone_upright\n", r"map.yaml:1: a class map is a mapping"),
    ],
    ids=["unknown-target", "missing-name", "unknown-name", "twice", "not-a-mapping"],
)
def test_class_map_refuses_unknown_names_with_file_and_line(tmp_path: Path, class_map, problem):
    data = tmp_path / "data.yaml"
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "images" / "train" / "a.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    data.write_text("path: .\ntrain: images/train\nnames: {0: traffic_cone, 1: digger, 2: hard_hat}\n")
    (tmp_path / "map.yaml").write_text(class_map)
    with pytest.raises(training.TrainingError, match=problem):
        training.remap_dataset(data, training.load_class_map(tmp_path / "map.yaml"), tmp_path / "out")


def test_remap_dataset_puts_city_labels_on_citywatch_ids(tmp_path: Path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    for name, label in (("a", "0 0.5 0.5 0.2 0.2\n2 0.1 0.1 0.1 0.1\n"), ("b", "1 0.3 0.3 0.2 0.2\n")):
        (tmp_path / "images" / "train" / f"{name}.jpg").write_bytes(b"\xff\xd8")
        (tmp_path / "labels" / "train" / f"{name}.txt").write_text(label)
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images/train\nnames: [traffic_cone, digger, cyclist]\n")
    (tmp_path / "map.yaml").write_text("traffic_cone: cone_upright\ndigger: excavator\ncyclist: null\n")
    out = training.remap_dataset(data, training.load_class_map(tmp_path / "map.yaml"), tmp_path / "cw")
    doc = yaml.safe_load(out.read_text())
    assert doc["names"] == dict(enumerate(CLASSES))
    labels = sorted((tmp_path / "cw" / "labels" / "train").glob("*.txt"))
    assert [p.read_text() for p in labels] == [
        f"{CLASSES.index('cone_upright')} 0.5 0.5 0.2 0.2\n",  # the cyclist is dropped
        f"{CLASSES.index('excavator')} 0.3 0.3 0.2 0.2\n",
    ]
    assert training.check_dataset(out)["train"] == 2


@pytest.mark.slow
def test_finetune_transfers_the_weights_and_starts_from_a_low_loss(tmp_path: Path, capsys):
    """The README's fine-tune command on a city's dataset: every tensor of the default model
    is in the model that trains before its first step, its first losses are those of a
    trained model (a run from random weights starts far higher), and the report compares
    before and after on the city's data and on rendered scenes."""
    needs_ultralytics()
    from citywatch.cli import main

    data = _city_dataset(tmp_path)
    (tmp_path / "city-classes.yaml").write_text(CITY_MAP)
    code = main(["model", "finetune", "--data", str(data), "--class-map", str(tmp_path / "city-classes.yaml"),
                 "--out", str(tmp_path / "ft"), "--epochs", "1", "--imgsz", "320", "--batch", "4",
                 "--workers", "0", "--replay", "8", "--heldout", "6"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)  # nothing but JSON on stdout
    transfer = report["train"]["transfer"]
    assert transfer["tensors_equal"] == transfer["tensors_total"] > 300
    assert transfer["classes_kept"] == list(CLASSES)
    first = report["train"]["first_loss"]

    scratch = training.train(tmp_path / "ft" / "train.yaml", tmp_path / "scratch", training.TrainSettings(
        model="yolov8n.yaml", epochs=1, imgsz=320, batch=4, workers=0))
    assert scratch.transfer is None
    assert first["dfl"] < 0.6 * scratch.first_loss["dfl"], (first, scratch.first_loss)
    assert first["box"] < scratch.first_loss["box"], (first, scratch.first_loss)

    rows = {c["name"]: c for c in report["rendered"]["classes"]}
    assert set(rows) >= {"cone_upright", "vehicle", "all"}
    assert {c["name"] for c in report["city"]["classes"]} <= {"cone_upright", "excavator",
                                                              "worker_helmet", "all"}
    md = (tmp_path / "ft" / "finetune-report.md").read_text()
    assert "| class | before | after | change |" in md


@pytest.mark.slow
def test_a_fine_tune_that_would_start_from_random_weights_is_stopped(tmp_path: Path):
    """pretrained=False makes ultralytics drop the given weights; the transfer check sees
    it before the first step and refuses to go on."""
    needs_ultralytics()
    data = _city_dataset(tmp_path, n_train=4, n_val=2)
    (tmp_path / "map.yaml").write_text(CITY_MAP)
    city = training.remap_dataset(data, training.load_class_map(tmp_path / "map.yaml"), tmp_path / "cw")
    settings = training.TrainSettings(model=str(training.DEFAULT_PT), epochs=1, imgsz=160, batch=4,
                                      workers=0, extra={"pretrained": False})
    with pytest.raises(training.TrainingError, match=r"tensors were transferred .* random weights"):
        training.train(city, tmp_path / "run", settings)


@pytest.mark.slow
def test_eval_prints_json_only_and_counts_false_positives(tiny_dataset: Path, tmp_path: Path):
    """`eval --json` through the command line: stdout parses as JSON although ultralytics
    prints progress; per class, boxes on images without that class are counted."""
    needs_ultralytics()
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "detectors.training", "eval", str(training.DEFAULT_PT),
         "--data", str(tiny_dataset), "--split", "val", "--imgsz", "320", "--json"],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (report,) = json.loads(proc.stdout)
    assert "Ultralytics" in proc.stderr or "all" in proc.stderr  # the progress went to stderr
    assert report["imgsz"] == 320 and report["images"] == 4
    fps = {f["name"]: f for f in report["false_positives"]}
    assert set(fps) == set(CLASSES)
    for f in fps.values():
        assert 0 <= f["images_hit"] <= f["images_without"] <= 4
        assert f["boxes"] >= f["images_hit"]



def test_the_run_time_detector_does_not_import_training():
    """Workers load weights; rendering, training and evaluation stay out of their process."""
    import subprocess
    import sys

    code = ("import sys, pkgutil, importlib, detectors.worker, detectors.backends as b; "
            "[importlib.import_module(m.name) for m in pkgutil.iter_modules(b.__path__, b.__name__ + '.')]; "
            "print(sorted(m for m in sys.modules if m.startswith(('detectors.training', 'simulators'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
