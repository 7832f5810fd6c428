"""Train (from an architecture, or fine-tune from .pt weights with the transfer checked),
export to ONNX, strip checkpoints."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from detectors.offline import import_ultralytics
from detectors.training.common import DEFAULT_IMGSZ, TrainingError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """How to train. `model` is an architecture YAML (random weights) or a .pt whose
    weights are transferred and then fine-tuned."""

    model: str = "yolov8n.yaml"
    epochs: int = 60
    time_h: float | None = None  # stop after this many hours, LR schedule fitted to it
    imgsz: int = DEFAULT_IMGSZ
    batch: int = 64
    device: str = "cpu"
    workers: int = 8
    seed: int = 0
    optimizer: str = "AdamW"
    lr0: float = 0.002
    cache: bool = False
    patience: int = 100
    amp: bool | None = None  # mixed precision; None: on accelerators only
    freeze: int = 0  # keep the first N layers (backbone) fixed: less forgetting
    warmup_epochs: float = 3.0
    extra: dict = field(default_factory=dict)  # further ultralytics train() arguments

    @property
    def fine_tune(self) -> bool:
        return str(self.model).lower().endswith(".pt")


@dataclass(frozen=True, slots=True)
class Transfer:
    """What a fine-tune took over from its starting weights, checked on the model that
    trains, before its first step: tensors equal to the source's, and classes kept."""

    source: str
    tensors_equal: int
    tensors_total: int
    classes_source: list[str]
    classes_kept: list[str]

    @property
    def share(self) -> float:
        return self.tensors_equal / self.tensors_total if self.tensors_total else 0.0


@dataclass(frozen=True, slots=True)
class TrainResult:
    best: Path
    transfer: Transfer | None  # None when trained from an architecture
    first_loss: dict[str, float]  # box / cls / dfl of the first batch
    epochs_done: int


def _state_dict(module):
    return {k: v.detach().float().cpu() for k, v in module.state_dict().items()}


def _check_transfer(source_pt: Path, model, data_names: dict) -> Transfer:
    import torch

    ckpt = torch.load(str(source_pt), map_location="cpu", weights_only=False)
    src = ckpt.get("ema") or ckpt["model"]
    src_sd = _state_dict(src)
    dst_sd = _state_dict(model)
    equal = sum(1 for k, v in dst_sd.items()
                if k in src_sd and src_sd[k].shape == v.shape and torch.equal(src_sd[k], v))
    src_names = list((getattr(src, "names", None) or {}).values())
    dst_names = list(data_names.values())
    kept = [n for i, n in enumerate(dst_names) if i < len(src_names) and src_names[i] == n]
    return Transfer(str(source_pt), equal, len(dst_sd), src_names, kept)


def train(data_yaml: str | os.PathLike[str], out_dir: str | os.PathLike[str],
          settings: TrainSettings = TrainSettings(), *,
          min_transfer: float = 0.9) -> TrainResult:
    """Train a YOLO detector on a YOLO-format dataset; returns the best weights (.pt).

    Given a .pt, its weights are transferred into the model that trains, and that is
    checked before the first step: fewer than `min_transfer` of the tensors equal to the
    source's stops the run (a fine-tune that silently starts from random weights is
    worse than none). Offline by construction: the architecture comes from its YAML or
    the .pt (no download), plots (which fetch a font) are off, and with YOLO_OFFLINE set
    AMP's self-check (which would fetch a reference model) is skipped.
    """
    import_ultralytics()
    from ultralytics import YOLO

    out_dir = Path(out_dir).resolve()
    if settings.fine_tune and not Path(settings.model).is_file():
        raise TrainingError(f"weights to fine-tune not found: {settings.model}")
    model = YOLO(settings.model)
    seen: dict = {}

    def after_setup(trainer) -> None:
        if settings.fine_tune:
            seen["transfer"] = _check_transfer(Path(settings.model), trainer.model, trainer.data["names"])
            t = seen["transfer"]
            log.info("transferred %d/%d tensors from %s; classes kept: %s", t.tensors_equal,
                     t.tensors_total, settings.model, ", ".join(t.classes_kept) or "none")
            if t.share < min_transfer:
                raise TrainingError(
                    f"only {t.tensors_equal}/{t.tensors_total} tensors were transferred from "
                    f"{settings.model}: this would train from random weights")

    def after_batch(trainer) -> None:
        items = trainer.loss_items
        if "first_loss" in seen or items is None:
            return
        if not isinstance(items, dict):  # older ultralytics: a tensor in loss_names order
            items = dict(zip(trainer.loss_names, items.tolist(), strict=False))
        seen["first_loss"] = {str(k).replace("_loss", ""): float(v) for k, v in items.items()}

    model.add_callback("on_pretrain_routine_end", after_setup)
    model.add_callback("on_train_batch_end", after_batch)
    if settings.device == "cpu" and settings.workers:
        log.info("on CPU ultralytics loads data in the main process (workers=0)")
    kwargs = dict(
        data=str(Path(data_yaml).resolve()), epochs=settings.epochs, imgsz=settings.imgsz,
        batch=settings.batch, device=settings.device, workers=settings.workers,
        seed=settings.seed, deterministic=False, optimizer=settings.optimizer, lr0=settings.lr0,
        cache="ram" if settings.cache else False, patience=settings.patience,
        project=str(out_dir.parent), name=out_dir.name, exist_ok=True,
        pretrained=settings.fine_tune,
        amp=settings.amp if settings.amp is not None else settings.device != "cpu",
        plots=False, verbose=True, val=True, warmup_epochs=settings.warmup_epochs,
    )
    if settings.freeze:
        kwargs["freeze"] = settings.freeze
    if settings.time_h:
        kwargs["time"] = settings.time_h
    kwargs.update(settings.extra)
    model.train(**kwargs)
    best = out_dir / "weights" / "best.pt"
    if not best.exists():
        raise TrainingError(f"training wrote no weights under {out_dir / 'weights'}")
    epochs_done = int(getattr(model.trainer, "epoch", -1)) + 1 if model.trainer else -1
    return TrainResult(best, seen.get("transfer"), seen.get("first_loss", {}), epochs_done)


def export_onnx(weights: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                imgsz: int = DEFAULT_IMGSZ, dynamic: bool = True) -> Path:
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


def strip_weights(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy a training checkpoint without its optimizer state (small, for inference)."""
    import_ultralytics()
    from ultralytics.utils.torch_utils import strip_optimizer

    shutil.copyfile(src, dst)
    strip_optimizer(str(dst))
    return Path(dst)
