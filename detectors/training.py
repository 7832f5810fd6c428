"""The project's own detection model: render a dataset, train, export, evaluate.

No pretrained weights can be fetched, so the default model (YOLOv8n, the 14 classes of
`simulators.scenes.CLASSES`) is trained from scratch on scenes the simulators render,
written in the standard YOLO dataset layout (images/<split>/*.jpg, labels/<split>/*.txt,
data.yaml). Training, export and evaluation take any YOLO-format dataset, so a city can
retrain on footage it labelled itself.

Run as `python -m detectors.training` (the same sub-commands as `citywatch model`), which
needs only numpy, OpenCV, PyYAML and ultralytics: a training host does not need the rest
of citywatch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from detectors.offline import import_ultralytics

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_PT = MODELS_DIR / "citywatch-default.pt"
DEFAULT_ONNX = MODELS_DIR / "citywatch-default.onnx"
SPLITS = ("train", "val", "test")


class TrainingError(RuntimeError):
    """A dataset, training run, export or evaluation that cannot go on (says why)."""


# ---------------------------------------------------------------------------------------
# dataset


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """What to render: how many images per split, from which seed, at what size."""

    counts: dict[str, int]
    seed: int
    aerial_fraction: float = 0.6
    width: int = 512
    height: int = 384
    min_box_px: float = 4.0
    jpeg_quality: int = 92


def _render_one(job: tuple[DatasetSpec, str, int, Path]) -> tuple[str, int, list[int]]:
    """Render image `index` of `split`; its seed depends only on (spec.seed, split, index)."""
    from simulators import scenes

    spec, split, index, root = job
    split_no = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    ss = np.random.SeedSequence(entropy=spec.seed, spawn_key=(split_no, index))
    rng = np.random.default_rng(ss)
    aerial = rng.random() < spec.aerial_fraction
    make = scenes.random_aerial_scene if aerial else scenes.random_cone_scene
    scene = make(rng, width=spec.width, height=spec.height)
    rendered = scenes.render_scene(scene, seed=int(rng.integers(0, 2**31)))
    name = f"{split}_{index:06d}"
    ok = cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), rendered.image,
                     [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
    if not ok:
        raise TrainingError(f"could not write {root / 'images' / split / name}.jpg")
    h, w = rendered.image.shape[:2]
    kept = [b for b in rendered.boxes
            if min(b.x2 - b.x1, b.y2 - b.y1) >= spec.min_box_px]
    (root / "labels" / split / f"{name}.txt").write_text(
        "".join(b.yolo_line(w, h) + "\n" for b in kept), encoding="utf-8")
    return split, index, [b.class_id for b in kept]


def render_dataset(root: str | os.PathLike[str], spec: DatasetSpec, *,
                   workers: int | None = None) -> Path:
    """Render a synthetic dataset in YOLO layout under `root`; returns its data.yaml.

    Images are rendered in parallel but each one depends only on (seed, split, index),
    so the same spec always yields the same dataset. A dataset holding only a `test`
    split (a held-out set) also points `train` and `val` at it, which ultralytics
    requires of every data.yaml.
    """
    from simulators.scenes import CLASSES

    root = Path(root)
    unknown = set(spec.counts) - set(SPLITS)
    if unknown:
        raise TrainingError(f"splits must be among {SPLITS}, got {sorted(unknown)}")
    for split in spec.counts:
        for sub in ("images", "labels"):
            d = root / sub / split
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
    jobs = [(spec, split, i, root) for split, n in spec.counts.items() for i in range(n)]
    workers = max(1, workers or os.cpu_count() or 1)
    counts = {split: np.zeros(len(CLASSES), int) for split in spec.counts}
    t0 = time.monotonic()
    if workers == 1:
        results = map(_render_one, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_render_one, jobs, chunksize=16)
    try:
        for split, _, ids in results:
            np.add.at(counts[split], ids, 1)
    finally:
        if workers > 1:
            pool.shutdown()
    log.info("rendered %d images in %.1f s", len(jobs), time.monotonic() - t0)
    return write_data_yaml(root, splits=list(spec.counts), names=CLASSES,
                           extra={"citywatch": {"spec": asdict(spec),
                                                "instances": {k: v.tolist() for k, v in counts.items()}}})


def write_data_yaml(root: Path, *, splits: Sequence[str], names: Sequence[str],
                    extra: dict | None = None) -> Path:
    """Write data.yaml for a YOLO dataset under `root` with the given splits."""
    doc: dict = {"path": str(Path(root).resolve())}
    for split in SPLITS:
        if split in splits:
            doc[split] = f"images/{split}"
    fallback = doc.get("val") or doc.get("test") or doc.get("train")
    doc.setdefault("train", fallback)
    doc.setdefault("val", fallback)
    doc["names"] = {i: n for i, n in enumerate(names)}
    doc.update(extra or {})
    path = Path(root) / "data.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def check_dataset(data_yaml: str | os.PathLike[str]) -> dict[str, int]:
    """Validate a YOLO dataset: every image has a label file whose lines are
    `class cx cy w h` with a known class and coordinates in [0, 1]. Returns images per split."""
    data_yaml = Path(data_yaml)
    doc = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    names = doc.get("names")
    nc = len(names) if names is not None else doc.get("nc")
    if not nc:
        raise TrainingError(f"{data_yaml}: no class names")
    base = Path(doc.get("path") or data_yaml.parent)
    if not base.is_absolute():
        base = data_yaml.parent / base
    problems, sizes, checked = [], {}, {}
    for split in SPLITS:
        rel = doc.get(split)
        if not rel:
            continue
        if rel in checked:  # a split that reuses another's folder (held-out only sets)
            sizes[split] = checked[rel]
            continue
        images = sorted(p for p in (base / rel).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        sizes[split] = checked[rel] = len(images)
        label_dir = base / str(rel).replace("images", "labels", 1)
        for img in images:
            lbl = label_dir / f"{img.stem}.txt"
            if not lbl.exists():
                problems.append(f"{lbl}: missing")
                continue
            for n, line in enumerate(lbl.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if len(parts) != 5:
                    problems.append(f"{lbl}:{n}: expected 5 fields, got {len(parts)}")
                    continue
                cls, *xywh = parts
                if not cls.isdigit() or int(cls) >= nc:
                    problems.append(f"{lbl}:{n}: class {cls!r} not in 0..{nc - 1}")
                vals = [float(v) for v in xywh]
                if not all(0.0 <= v <= 1.0 for v in vals) or vals[2] <= 0 or vals[3] <= 0:
                    problems.append(f"{lbl}:{n}: box {xywh} outside [0, 1] or empty")
    if problems:
        raise TrainingError(f"{len(problems)} label problems: " + "; ".join(problems[:5]))
    return sizes


# ---------------------------------------------------------------------------------------
# train / export / evaluate


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """How to train; the defaults are those of the committed default model."""

    model: str = "yolov8n.yaml"  # architecture from scratch, or a .pt to fine-tune
    epochs: int = 60
    time_h: float | None = None  # stop after this many hours, LR schedule fitted to it
    imgsz: int = 512
    batch: int = 64
    device: str = "cpu"
    workers: int = 8
    seed: int = 0
    optimizer: str = "AdamW"
    lr0: float = 0.002
    cache: bool = False
    patience: int = 100
    amp: bool | None = None  # mixed precision; None: on accelerators only


def train(data_yaml: str | os.PathLike[str], out_dir: str | os.PathLike[str],
          settings: TrainSettings = TrainSettings()) -> Path:
    """Train a YOLO detector on a YOLO-format dataset; returns the best weights (.pt).

    Offline by construction: the architecture comes from its YAML (no download), plots
    (which fetch a font) are off, and with YOLO_OFFLINE set AMP's self-check (which would
    fetch a reference model) is skipped rather than attempted.
    """
    import_ultralytics()
    from ultralytics import YOLO

    out_dir = Path(out_dir).resolve()
    model = YOLO(settings.model)
    kwargs = dict(
        data=str(Path(data_yaml).resolve()), epochs=settings.epochs, imgsz=settings.imgsz,
        batch=settings.batch, device=settings.device, workers=settings.workers,
        seed=settings.seed, deterministic=False, optimizer=settings.optimizer, lr0=settings.lr0,
        cache="ram" if settings.cache else False, patience=settings.patience,
        project=str(out_dir.parent), name=out_dir.name, exist_ok=True, pretrained=False,
        amp=settings.amp if settings.amp is not None else settings.device != "cpu",
        plots=False, verbose=True, val=True,
    )
    if settings.time_h:
        kwargs["time"] = settings.time_h
    model.train(**kwargs)
    best = out_dir / "weights" / "best.pt"
    if not best.exists():
        raise TrainingError(f"training wrote no weights under {out_dir / 'weights'}")
    return best


def export_onnx(weights: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                imgsz: int = 512, dynamic: bool = True) -> Path:
    """Export .pt weights to ONNX (dynamic batch and size by default, so detector workers
    may batch frames and pick their own inference size)."""
    import_ultralytics()
    from ultralytics import YOLO

    produced = Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=dynamic,
                                              simplify=True, opset=17, device="cpu"))
    if out is not None and Path(out).resolve() != produced.resolve():
        shutil.move(str(produced), str(out))
        return Path(out)
    return produced


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    name: str
    images: int
    instances: int
    precision: float
    recall: float
    map50: float
    map50_95: float


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Precision, recall and mAP per class and overall on one split of a dataset."""

    weights: str
    weights_sha256: str
    data: str
    split: str
    imgsz: int
    images: int
    overall: ClassMetrics
    classes: list[ClassMetrics] = field(default_factory=list)
    speed_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        rows = [f"| {c.name} | {c.images} | {c.instances} | {c.precision:.3f} | {c.recall:.3f} "
                f"| {c.map50:.3f} | {c.map50_95:.3f} |" for c in [*self.classes, self.overall]]
        return "\n".join([
            f"### `{Path(self.weights).name}` on `{self.split}` of `{Path(self.data).parent.name}`",
            "",
            f"{self.images} images at imgsz {self.imgsz}; weights sha256 `{self.weights_sha256[:16]}…`",
            "",
            "| class | images | instances | P | R | mAP50 | mAP50-95 |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ])


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_size(data_yaml: Path, split: str) -> int:
    doc = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    base = Path(doc.get("path") or data_yaml.parent)
    if not base.is_absolute():
        base = data_yaml.parent / base
    rel = doc.get(split)
    if not rel:
        return -1
    return sum(1 for p in (base / rel).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def evaluate(weights: str | os.PathLike[str], data_yaml: str | os.PathLike[str], *,
             split: str = "test", imgsz: int = 512, batch: int = 16, device: str = "cpu",
             conf: float = 0.001, iou: float = 0.7) -> EvalReport:
    """Validate weights (.pt or .onnx) on a split of a YOLO dataset, per class."""
    import_ultralytics()
    from ultralytics import YOLO

    weights = Path(weights)
    if not weights.exists():
        raise TrainingError(f"weights not found: {weights}")
    model = YOLO(str(weights), task="detect")
    m = model.val(data=str(Path(data_yaml).resolve()), split=split, imgsz=imgsz, batch=batch,
                  device=device, conf=conf, iou=iou, plots=False, verbose=False,
                  project=str(Path(os.environ.get("TMPDIR", "/tmp")) / "citywatch-val"),
                  name="val", exist_ok=True)
    names = m.names
    nt = getattr(m, "nt_per_class", None)
    ni = getattr(m, "nt_per_image", None)
    classes = []
    for k, c in enumerate(m.ap_class_index):
        p, r, ap50, ap = m.box.class_result(k)
        classes.append(ClassMetrics(names[int(c)], int(ni[c]) if ni is not None else -1,
                                    int(nt[c]) if nt is not None else -1,
                                    float(p), float(r), float(ap50), float(ap)))
    mp, mr, map50, map_ = m.box.mean_results()
    n_images = _split_size(Path(data_yaml), split)
    overall = ClassMetrics("all", n_images, int(nt.sum()) if nt is not None else -1,
                           float(mp), float(mr), float(map50), float(map_))
    return EvalReport(str(weights), _sha256(weights), str(data_yaml), split, imgsz, n_images,
                      overall, classes, {k: float(v) for k, v in (m.speed or {}).items()})


def write_reports(reports: Sequence[EvalReport], out_dir: str | os.PathLike[str], *,
                  stem: str = "eval", preamble: str = "") -> tuple[Path, Path]:
    """Write reports as markdown and JSON next to each other."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{stem}.md"
    js = out_dir / f"{stem}.json"
    md.write_text(preamble + "\n".join(r.to_markdown() for r in reports), encoding="utf-8")
    js.write_text(json.dumps([asdict(r) for r in reports], indent=2, ensure_ascii=False),
                  encoding="utf-8")
    return md, js


def strip_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy a training checkpoint without its optimizer state (small, for inference)."""
    import_ultralytics()
    from ultralytics.utils.torch_utils import strip_optimizer

    shutil.copyfile(src, dst)
    strip_optimizer(str(dst))
    return Path(dst)


# ---------------------------------------------------------------------------------------
# command line (shared by `citywatch model` and `python -m detectors.training`)


def add_arguments(sub) -> None:
    """Add the dataset / train / export / eval sub-commands to an argparse sub-parser set."""
    p = sub.add_parser("dataset", help="render a synthetic YOLO dataset")
    p.add_argument("--out", required=True, help="dataset folder")
    p.add_argument("--train", type=int, default=0, help="training images")
    p.add_argument("--val", type=int, default=0, help="validation images")
    p.add_argument("--test", type=int, default=0, help="held-out test images")
    p.add_argument("--seed", type=int, required=True, help="base seed of every image")
    p.add_argument("--aerial-fraction", type=float, default=0.6)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--min-box-px", type=float, default=4.0, help="smallest box labelled")
    p.add_argument("--workers", type=int, default=None, help="render processes (default: all CPUs)")
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("train", help="train a detector on a YOLO-format dataset")
    p.add_argument("--data", required=True, help="data.yaml of a YOLO-format dataset")
    p.add_argument("--out", required=True, help="run folder (weights/ lands inside)")
    p.add_argument("--model", default="yolov8n.yaml", help="architecture YAML or .pt to fine-tune")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--time", type=float, default=None, help="stop after this many hours")
    p.add_argument("--imgsz", type=int, default=512)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu, 0, 0,1 ...")
    p.add_argument("--workers", type=int, default=8, help="dataloader workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr0", type=float, default=0.002)
    p.add_argument("--optimizer", default="AdamW")
    p.add_argument("--cache", action="store_true", help="hold decoded images in RAM")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="export .pt weights to ONNX")
    p.add_argument("weights", help=".pt weights")
    p.add_argument("--out", default=None, help="ONNX file (default: next to the weights)")
    p.add_argument("--imgsz", type=int, default=512)
    p.add_argument("--static", action="store_true", help="fixed batch 1 and image size")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("eval", help="precision, recall, mAP per class on a dataset split")
    p.add_argument("weights", nargs="+", help=".pt or .onnx weights")
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument("--split", default="test")
    p.add_argument("--imgsz", type=int, default=512)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--report", default=None, help="write <report>.md and <report>.json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_eval)


def _cmd_dataset(args) -> int:
    counts = {k: n for k, n in (("train", args.train), ("val", args.val), ("test", args.test)) if n}
    if not counts:
        raise TrainingError("nothing to render: give --train, --val and/or --test counts")
    spec = DatasetSpec(counts, args.seed, args.aerial_fraction, args.width, args.height,
                       args.min_box_px)
    path = render_dataset(args.out, spec, workers=args.workers)
    print(path)
    return 0


def _cmd_train(args) -> int:
    settings = TrainSettings(args.model, args.epochs, args.time, args.imgsz, args.batch,
                             str(args.device), args.workers, args.seed, args.optimizer, args.lr0,
                             args.cache)
    print(train(args.data, args.out, settings))
    return 0


def _cmd_export(args) -> int:
    print(export_onnx(args.weights, args.out, imgsz=args.imgsz, dynamic=not args.static))
    return 0


def _cmd_eval(args) -> int:
    reports = [evaluate(w, args.data, split=args.split, imgsz=args.imgsz, batch=args.batch,
                        device=str(args.device)) for w in args.weights]
    if args.report:
        out = Path(args.report)
        write_reports(reports, out.parent, stem=out.name)
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2, ensure_ascii=False))
    else:
        print("\n".join(r.to_markdown() for r in reports))
    bad = [r for r in reports if not math.isfinite(r.overall.map50)]
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m detectors.training <dataset|train|export|eval> ...`."""
    parser = argparse.ArgumentParser(prog="python -m detectors.training",
                                     description="Train, export and evaluate the detection model.")
    add_arguments(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
