"""The YOLO detector on ultralytics: the only module that touches the ultralytics YOLO object.

Loads `.pt` (torch) or exported `.onnx` weights (ONNX Runtime, the CPU default) and runs
batched inference. Every detection it reports carries the model's name, version and the
sha256 of the exact weights file, so a case can say which model saw what.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.base import Detections, DetectorError
from detectors.config import DetectorConfig
from detectors.offline import import_ultralytics
from storage.frames import ModelInfo

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class YoloDetector:
    """Batched YOLO inference on BGR images."""

    def __init__(self, weights: str | Path, *, imgsz: int = 640, confidence: float = 0.25,
                 iou: float = 0.5, batch_size: int = 8, device: str = "cpu"):
        YOLO = import_ultralytics().YOLO

        path = Path(weights)
        if not path.is_file():
            raise DetectorError(f"model weights not found: {path}")
        if path.suffix not in (".pt", ".onnx"):
            raise DetectorError(f"weights must be .pt or .onnx, but got {path.name}")
        self.path = path
        self.imgsz, self.confidence, self.iou = imgsz, confidence, iou
        self.batch_size, self.device = batch_size, device
        try:
            self._yolo = YOLO(str(path), task="detect")
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise DetectorError(f"cannot load {path}: {exc}") from exc
        sha = file_sha256(path)
        self._model = ModelInfo(path.stem, self._version(sha), sha)
        names = self._yolo.names or {}
        self.names = tuple(names[i] for i in sorted(names))

    @classmethod
    def from_config(cls, config: DetectorConfig) -> YoloDetector:
        return cls(config.weights, imgsz=config.imgsz, confidence=config.confidence,
                   iou=config.iou, batch_size=config.batch_size, device=config.device)

    def _version(self, sha: str) -> str:
        # Checkpoints and ONNX exports carry their training / export date; the format and
        # hash prefix make the version unique even for a file without one.
        ckpt = getattr(self._yolo, "ckpt", None)
        stamp = ckpt.get("date") if isinstance(ckpt, dict) else None
        if stamp is None and self.path.suffix == ".onnx":
            import onnx

            meta = {p.key: p.value for p in onnx.load(str(self.path)).metadata_props}
            stamp = meta.get("date")
        return "-".join([self.path.suffix.lstrip("."), sha[:12]] + ([str(stamp)[:10]] if stamp else []))

    @property
    def model(self) -> ModelInfo:
        return self._model

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One Detections per BGR image; boxes in each image's own pixels."""
        if not images:
            return []
        results = self._yolo.predict(
            list(images), imgsz=self.imgsz, conf=self.confidence, iou=self.iou,
            device=self.device, batch=self.batch_size, verbose=False)
        out = []
        for r in results:
            boxes = r.boxes
            out.append(Detections(
                boxes.xyxy.cpu().numpy().astype(float).reshape(-1, 4),
                boxes.conf.cpu().numpy().astype(float).reshape(-1),
                boxes.cls.cpu().numpy().astype(int).reshape(-1),
                self.names))
        return out


def build_untrained(path: str | Path, names: Sequence[str], *, seed: int = 0,
                    onnx: bool = False, imgsz: int = 640) -> Path:
    """Write a randomly initialised YOLOv8n with these class names (no download needed).

    Its detections mean nothing, but it runs exactly like a trained model of the default
    architecture: plumbing tests and speed benchmarks use it where the trained weights are
    not the point. Returns the .pt path, or the exported .onnx path when `onnx` is set.
    """
    import torch

    YOLO = import_ultralytics().YOLO
    from ultralytics.nn.tasks import DetectionModel

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    yolo = YOLO("yolov8n.yaml", task="detect")
    net = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
    net.names = dict(enumerate(names))
    yolo.model = net
    yolo.save(str(path.with_suffix(".pt")))
    if not onnx:
        return path.with_suffix(".pt")
    exported = YOLO(str(path.with_suffix(".pt")), task="detect").export(
        format="onnx", imgsz=imgsz, dynamic=True, simplify=False, verbose=False)
    return Path(exported)
