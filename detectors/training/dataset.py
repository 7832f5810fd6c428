"""Render a synthetic training set in the YOLO layout and check any YOLO dataset.

Images are written as images/<split>/*.jpg with labels/<split>/*.txt and a data.yaml
that also records the render spec and the instances per class. With `randomise` the mix
follows the domain-randomisation recipe of the default model (simulators.scenes.randomise):
aerial views, pole-mounted cone cameras, hand-held and low-drone photographs of road works,
and empty roads as hard negatives, with backdrops, look-alike distractors, lens, light and
sensor effects.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from detectors.training.common import SPLITS, TrainingError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """What to render: how many images per split, from which seed, at what size."""

    counts: dict[str, int]
    seed: int
    aerial_fraction: float | None = None  # share of drone views; None: 0.6, randomised 0.4
    width: int = 512
    height: int = 384
    min_box_px: float = 4.0
    jpeg_quality: int = 92
    randomise: bool = False  # the domain-randomised mix (see the module docstring)

    def __post_init__(self) -> None:
        unknown = set(self.counts) - set(SPLITS)
        if unknown:
            raise TrainingError(f"splits must be among {SPLITS}, got {sorted(unknown)}")


# the randomised mix: (kind, share); kinds are drawn per image from its own seed
RANDOMISED_MIX = (("aerial", 0.40), ("pole", 0.22), ("handheld", 0.28), ("empty", 0.10))


def _scene_for(spec: DatasetSpec, rng: np.random.Generator):
    from simulators import scenes

    if not spec.randomise:
        aerial = rng.random() < (0.6 if spec.aerial_fraction is None else spec.aerial_fraction)
        make = scenes.random_aerial_scene if aerial else scenes.random_cone_scene
        return make(rng, width=spec.width, height=spec.height), False
    kinds, shares = zip(*RANDOMISED_MIX, strict=True)
    if spec.aerial_fraction is not None:  # the other kinds keep their proportions
        rest = 1.0 - shares[0]
        shares = (spec.aerial_fraction, *(s * (1.0 - spec.aerial_fraction) / rest for s in shares[1:]))
    kind = kinds[int(rng.choice(len(kinds), p=np.asarray(shares) / sum(shares)))]
    if kind == "aerial":
        return scenes.random_aerial_scene(rng, width=spec.width, height=spec.height), rng.random() < 0.3
    w, h = spec.width, spec.height
    if kind == "handheld" and rng.random() < 0.3:  # phones are held upright too
        w, h = h, w
    style = "pole" if kind == "pole" else "handheld"
    if kind == "empty":
        style = "pole" if rng.random() < 0.5 else "handheld"
    scene = scenes.random_cone_scene(rng, width=w, height=h, style=style,
                                     clutter=kind != "pole" or rng.random() < 0.5,
                                     empty=kind == "empty")
    return scene, rng.random() < 0.7


def _render_one(job: tuple[DatasetSpec, str, int, Path]) -> tuple[str, int, list[int]]:
    """Render image `index` of `split`; its seed depends only on (spec.seed, split, index)."""
    from simulators import scenes

    spec, split, index, root = job
    split_no = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    ss = np.random.SeedSequence(entropy=spec.seed, spawn_key=(split_no, index))
    rng = np.random.default_rng(ss)
    scene, photographic = _scene_for(spec, rng)
    rendered = scenes.render_scene(scene, seed=int(rng.integers(0, 2**31)))
    image, boxes = rendered.image, rendered.boxes
    if photographic:
        from simulators.scenes.randomise import photographic as photo_effects

        image, boxes = photo_effects(image, boxes, rng)
    name = f"{split}_{index:06d}"
    ok = cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), image,
                     [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
    if not ok:
        raise TrainingError(f"could not write {root / 'images' / split / name}.jpg")
    h, w = image.shape[:2]
    kept = [b for b in boxes
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
