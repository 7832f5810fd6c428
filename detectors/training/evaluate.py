"""Evaluate weights (.pt or .onnx) on a split of a YOLO dataset: precision, recall and mAP
per class, and per class the boxes it puts on images that hold no such object."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from detectors.offline import import_ultralytics
from detectors.training.common import DEFAULT_IMGSZ, TrainingError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FALSE_POSITIVE_CONF = 0.25  # the detector workers' default confidence (detectors.config)


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
class FalsePositives:
    """Boxes of one class, at the workers' confidence, on images that hold none of it."""

    name: str
    images_without: int  # images of the split without this class
    images_hit: int  # ... on which the model put a box of it anyway
    boxes: int  # how many such boxes


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
    false_positives: list[FalsePositives] = field(default_factory=list)
    empty_images: int = 0  # images with no labelled object at all
    empty_images_with_boxes: int = 0  # ... on which the model still put a box

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
            f"False positives at confidence {FALSE_POSITIVE_CONF}: boxes of a class on images "
            f"without it; {self.empty_images_with_boxes} of {self.empty_images} images with "
            "nothing labelled got a box.",
            "",
            "| class | images without it | of which got a box | boxes |",
            "|---|---:|---:|---:|",
            *[f"| {f.name} | {f.images_without} | {f.images_hit} | {f.boxes} |"
              for f in self.false_positives if f.boxes],
            "",
        ])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_images(data_yaml: Path, split: str) -> tuple[list[Path], dict[int, str]]:
    """The image files of a split (folders or list files) and the dataset's class names."""
    doc = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8"))
    base = Path(doc.get("path") or Path(data_yaml).parent)
    if not base.is_absolute():
        base = Path(data_yaml).parent / base
    names = doc.get("names") or {}
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in names.items()}
    rels = doc.get(split)
    if not rels:
        return [], names
    images: list[Path] = []
    for rel in rels if isinstance(rels, list) else [rels]:
        p = Path(rel) if Path(rel).is_absolute() else base / rel
        if p.is_dir():
            images += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix == ".txt" and p.is_file():
            images += [Path(line.strip()) if Path(line.strip()).is_absolute() else base / line.strip()
                       for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return images, names


def label_path(image: Path) -> Path:
    """The YOLO label file of an image: the last images/ folder of its path becomes labels/."""
    parts = list(image.parts)
    k = len(parts) - 1 - parts[::-1].index("images")
    parts[k] = "labels"
    return Path(*parts).with_suffix(".txt")


def false_positives(model, images: list[Path], data_names: dict[int, str], *, imgsz: int,
                    device: str, conf: float = FALSE_POSITIVE_CONF,
                    batch: int = 16) -> tuple[list[FalsePositives], int, int]:
    """Per class of the model: boxes on images whose labels hold none of that class (matched
    by name, so a model and a dataset may number their classes differently)."""
    model_names = model.names
    present: list[set[str]] = []
    for img in images:
        lbl = label_path(img)
        ids = {int(line.split()[0]) for line in lbl.read_text(encoding="utf-8").splitlines()
               if line.strip()} if lbl.exists() else set()
        present.append({data_names.get(i, str(i)) for i in ids})
    hits = {n: [0, 0, 0] for n in model_names.values()}  # images_without, images_hit, boxes
    empty = empty_hit = 0
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        results = model.predict([str(p) for p in chunk], imgsz=imgsz, conf=conf, device=device,
                                verbose=False)
        for res, have in zip(results, present[start:start + batch], strict=True):
            got: dict[str, int] = {}
            for c in res.boxes.cls.tolist():
                n = model_names[int(c)]
                got[n] = got.get(n, 0) + 1
            if not have:
                empty += 1
                empty_hit += bool(got)
            for n, row in hits.items():
                if n in have:
                    continue
                row[0] += 1
                if got.get(n):
                    row[1] += 1
                    row[2] += got[n]
    return [FalsePositives(n, *row) for n, row in hits.items()], empty, empty_hit


def evaluate(weights: str | os.PathLike[str], data_yaml: str | os.PathLike[str], *,
             split: str = "test", imgsz: int = DEFAULT_IMGSZ, batch: int = 16,
             device: str = "cpu", conf: float = 0.001, iou: float = 0.7) -> EvalReport:
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
    images, data_names = split_images(Path(data_yaml), split)
    n_images = len(images)
    fps, empty, empty_hit = false_positives(model, images, data_names, imgsz=imgsz, device=device,
                                            batch=batch)
    overall = ClassMetrics("all", n_images, int(nt.sum()) if nt is not None else -1,
                           float(mp), float(mr), float(map50), float(map_))
    return EvalReport(str(weights), _sha256(weights), str(data_yaml), split, imgsz, n_images,
                      overall, classes, {k: float(v) for k, v in (m.speed or {}).items()},
                      fps, empty, empty_hit)


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
