"""Fine-tune the default model on a city's own labelled frames without losing what they lack.

A city's dataset names its classes its own way ("traffic_cone", "digger"), and usually
holds a few of citywatch's 14 classes only. So:

1. a class map (YAML: city name -> citywatch class, or null to drop the label) rewrites
   its labels onto citywatch's class ids; a name the map does not know, or a target that
   is no citywatch class, is refused with the file and line;
2. the model keeps all 14 classes (so every tensor of the base model transfers) and
   trains on the city's images plus a replay share of rendered scenes, which hold the
   classes the city's data lacks; the first layers may be frozen;
3. the base and the fine-tuned model are both evaluated on the city's test split and on
   a rendered held-out set: what the city gained, and what it lost, per class.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from detectors.training.common import DEFAULT_PT, SPLITS, TrainingError
from detectors.training.dataset import DatasetSpec, render_dataset, write_data_yaml
from detectors.training.evaluate import EvalReport, evaluate, label_path, split_images
from detectors.training.run import TrainResult, TrainSettings, train

log = logging.getLogger(__name__)

HELDOUT_SEED = 777  # the rendered held-out set of the default model's card
REPLAY_SEED = 11  # never the seed of a held-out set


def _citywatch_classes() -> tuple[str, ...]:
    from simulators.scenes import CLASSES

    return CLASSES


@dataclass(frozen=True, slots=True)
class ClassMap:
    """City class name -> citywatch class name (None: drop such labels); where each
    entry was written (line numbers, for errors)."""

    path: str
    targets: dict[str, str | None]
    lines: dict[str, int]


def load_class_map(path: str | os.PathLike[str]) -> ClassMap:
    """Read a class map: a YAML mapping of the city's class names onto citywatch's."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text)
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read the class map: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TrainingError(f"{path}: not YAML: {exc}") from exc
    if root is None or not isinstance(root, yaml.MappingNode):
        raise TrainingError(f"{path}:1: a class map is a mapping 'city name: citywatch class'")
    known = _citywatch_classes()
    targets: dict[str, str | None] = {}
    lines: dict[str, int] = {}
    for key, value in root.value:
        line = key.start_mark.line + 1
        name = str(key.value)
        if name in targets:
            raise TrainingError(f"{path}:{line}: {name!r} is mapped twice")
        if not isinstance(value, yaml.ScalarNode):
            raise TrainingError(f"{path}:{line}: {name!r} must map to one class name or null")
        target = None if value.tag.endswith(":null") else str(value.value)
        if target is not None and target not in known:
            raise TrainingError(f"{path}:{line}: {target!r} (for {name!r}) is not a citywatch "
                                f"class; expected one of {', '.join(known)} or null")
        targets[name] = target
        lines[name] = line
    return ClassMap(str(path), targets, lines)


def _dataset_doc(data_yaml: Path) -> tuple[dict, Path, dict[int, str]]:
    try:
        doc = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TrainingError(f"{data_yaml}: cannot read: {exc}") from exc
    if not isinstance(doc, dict) or "names" not in doc:
        raise TrainingError(f"{data_yaml}: not a YOLO data.yaml (no names)")
    base = Path(doc.get("path") or data_yaml.parent)
    if not base.is_absolute():
        base = data_yaml.parent / base
    names = doc["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}
    return doc, base, names


def remap_dataset(data_yaml: str | os.PathLike[str], class_map: ClassMap,
                  out_root: str | os.PathLike[str]) -> Path:
    """Write the city's dataset under `out_root` with labels on citywatch's class ids
    (images are linked, not copied); returns its data.yaml. Every class of the city's
    dataset must be in the map, and every name in the map a class of the dataset."""
    data_yaml = Path(data_yaml)
    doc, base, names = _dataset_doc(data_yaml)
    missing = [n for n in names.values() if n not in class_map.targets]
    if missing:
        raise TrainingError(f"{class_map.path}: no entry for {', '.join(map(repr, missing))} "
                            f"(classes of {data_yaml}); map each to a citywatch class or null")
    for name, line in class_map.lines.items():
        if name not in names.values():
            raise TrainingError(f"{class_map.path}:{line}: {name!r} is not a class of {data_yaml} "
                                f"(it has {', '.join(map(repr, names.values()))})")
    ids = {c: i for i, c in enumerate(_citywatch_classes())}
    new_id = {k: (ids[class_map.targets[n]] if class_map.targets[n] else None) for k, n in names.items()}
    out_root = Path(out_root).resolve()
    splits = []
    for split in SPLITS:
        images, _ = split_images(data_yaml, split) if doc.get(split) else ([], {})
        if not images:
            continue
        splits.append(split)
        img_dir, lbl_dir = out_root / "images" / split, out_root / "labels" / split
        for d in (img_dir, lbl_dir):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        for k, img in enumerate(images):
            stem = f"{k:06d}_{img.stem}"
            target = img_dir / f"{stem}{img.suffix.lower()}"
            try:
                os.symlink(img.resolve(), target)
            except OSError:
                shutil.copyfile(img, target)
            lbl = label_path(img) if "images" in img.parts else img.with_suffix(".txt")
            out_lines = []
            if lbl.exists():
                for n, line in enumerate(lbl.read_text(encoding="utf-8").splitlines(), 1):
                    fields = line.split()
                    if not fields:
                        continue
                    if not fields[0].isdigit() or int(fields[0]) not in new_id:
                        raise TrainingError(f"{lbl}:{n}: class {fields[0]!r} not in {data_yaml}'s names")
                    cid = new_id[int(fields[0])]
                    if cid is not None:
                        out_lines.append(" ".join([str(cid), *fields[1:]]))
            (lbl_dir / f"{stem}.txt").write_text("".join(x + "\n" for x in out_lines), encoding="utf-8")
    if not splits:
        raise TrainingError(f"{data_yaml}: no images in any of {', '.join(SPLITS)}")
    return write_data_yaml(out_root, splits=splits, names=_citywatch_classes(),
                           extra={"citywatch": {"remapped_from": str(data_yaml.resolve()),
                                                "class_map": class_map.targets}})


@dataclass(frozen=True, slots=True)
class ClassChange:
    name: str
    before: float  # mAP50
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class BeforeAfter:
    """mAP50 per class of the base and the fine-tuned model on one evaluation set."""

    data: str
    split: str
    before: EvalReport
    after: EvalReport
    classes: list[ClassChange] = field(default_factory=list)


def compare(before: EvalReport, after: EvalReport) -> BeforeAfter:
    b = {c.name: c.map50 for c in before.classes}
    a = {c.name: c.map50 for c in after.classes}
    rows = [ClassChange(n, b.get(n, 0.0), a.get(n, 0.0)) for n in _citywatch_classes() if n in a or n in b]
    rows.append(ClassChange("all", before.overall.map50, after.overall.map50))
    return BeforeAfter(before.data, before.split, before, after, rows)


@dataclass(frozen=True, slots=True)
class FineTuneReport:
    weights: str
    train: TrainResult
    city: BeforeAfter | None
    rendered: BeforeAfter
    replay_images: int
    freeze: int

    def to_markdown(self) -> str:
        out = [f"# Fine-tune: `{self.weights}`", "",
               f"Transferred {self.train.transfer.tensors_equal}/{self.train.transfer.tensors_total} "
               f"tensors from `{self.train.transfer.source}`; first losses "
               + ", ".join(f"{k} {v:.2f}" for k, v in self.train.first_loss.items())
               + f"; {self.train.epochs_done} epochs; {self.replay_images} replayed rendered "
               f"images; first {self.freeze} layers frozen.", ""]
        for title, ba in (("the city's data", self.city), ("rendered held-out scenes", self.rendered)):
            if ba is None:
                continue
            out += [f"## mAP50 on {title} (`{ba.split}` of `{ba.data}`)", "",
                    "| class | before | after | change |", "|---|---:|---:|---:|"]
            out += [f"| {c.name} | {c.before:.3f} | {c.after:.3f} | {c.delta:+.3f} |" for c in ba.classes]
            out.append("")
        return "\n".join(out)


def finetune(city_data: str | os.PathLike[str], class_map_path: str | os.PathLike[str],
             out_dir: str | os.PathLike[str], *, settings: TrainSettings | None = None,
             replay: int = 500, heldout: int = 200, render_workers: int | None = None,
             eval_split: str | None = None) -> FineTuneReport:
    """Remap a city's dataset, train from `settings.model` (default: the default model)
    on it plus `replay` rendered images, and compare before / after on the city's test
    split (val if it has none) and on `heldout` rendered scenes (seed 777)."""
    settings = settings or TrainSettings(model=str(DEFAULT_PT), epochs=30, freeze=10, lr0=0.001,
                                         warmup_epochs=1.0)
    if not settings.fine_tune:
        raise TrainingError(f"fine-tuning starts from .pt weights, got {settings.model!r}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmap = load_class_map(class_map_path)
    city = remap_dataset(city_data, cmap, out / "city")
    doc = yaml.safe_load(city.read_text(encoding="utf-8"))
    if "train" not in doc:
        raise TrainingError(f"{city_data}: no training split")
    train_dirs = [str((out / "city" / doc["train"]).resolve())]
    n_replay = 0
    if replay > 0:
        spec = DatasetSpec({"train": replay}, REPLAY_SEED, width=640, height=480, min_box_px=5,
                           randomise=True)
        render_dataset(out / "replay", spec, workers=render_workers)
        train_dirs.append(str((out / "replay" / "images" / "train").resolve()))
        n_replay = replay
    spec = DatasetSpec({"test": heldout}, HELDOUT_SEED, min_box_px=5)
    rendered = render_dataset(out / "heldout", spec, workers=render_workers)
    merged = dict(doc)
    merged["train"] = train_dirs
    merged["path"] = str((out / "city").resolve())
    mixed = out / "train.yaml"
    mixed.write_text(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), encoding="utf-8")
    result = train(mixed, out / "run", settings)
    split = eval_split or ("test" if "test" in doc and doc["test"] != doc["train"] else "val")
    kw = dict(imgsz=settings.imgsz, device=settings.device, batch=16)
    city_ba = compare(evaluate(settings.model, city, split=split, **kw),
                      evaluate(result.best, city, split=split, **kw))
    rendered_ba = compare(evaluate(settings.model, rendered, split="test", **kw),
                          evaluate(result.best, rendered, split="test", **kw))
    report = FineTuneReport(str(result.best), result, city_ba, rendered_ba, n_replay, settings.freeze)
    (out / "finetune-report.md").write_text(report.to_markdown(), encoding="utf-8")
    (out / "finetune-report.json").write_text(json.dumps(asdict(report), indent=2, default=str),
                                              encoding="utf-8")
    return report
