"""The ultralytics backend: the only module that touches the ultralytics YOLO object.

Loads `.pt` (torch) or exported `.onnx` weights and runs batched `predict()`. It needs the
`yolo` extra (`pip install citywatch[yolo]`: ultralytics, torch); this module imports
them only when a detector is built, so the base install can read its settings. Every
detection carries the model's name, version and the sha256 of the exact weights file, so
a case can say which model saw what.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from detectors.base import (
    BackendConfig,
    Detections,
    DetectorError,
    file_sha256,
    model_info,
    parse_names,
    register,
    weights_file,
)
from detectors.offline import import_ultralytics, quiet_inference
from storage.frames import ModelInfo

log = logging.getLogger(__name__)


class UltralyticsConfig(BackendConfig):
    """ultralytics `predict()` on .pt (torch) or .onnx weights; needs the `yolo` extra."""

    type: Literal["ultralytics"] = Field("ultralytics", title="Backend",
                                         description="ultralytics YOLO: .pt or .onnx weights.")
    weights: str = Field(
        "detectors/models/citywatch-default.pt", title="Model weights",
        description=".pt (torch) or .onnx; relative paths are resolved against the project "
        "root. The class list comes from the file's own metadata.")
    device: str = Field("cpu", title="Inference device", description="cpu, cuda:0, ...")


class YoloDetector:
    """Batched YOLO inference on BGR images."""

    def __init__(self, config: UltralyticsConfig):
        path = weights_file(config, (".pt", ".onnx"))
        YOLO = import_ultralytics().YOLO
        quiet_inference()
        self.path = path
        self.imgsz, self.confidence, self.iou = config.imgsz, config.confidence, config.iou
        self.device = config.device
        try:
            self._yolo = YOLO(str(path), task="detect")
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise DetectorError(f"cannot load {path}: {exc}") from exc
        self._names = parse_names(self._yolo.names or {})
        self._model = model_info(path, file_sha256(path), self._stamp())

    def _stamp(self) -> str | None:
        # Checkpoints and ONNX exports carry their training / export date.
        ckpt = getattr(self._yolo, "ckpt", None)
        stamp = ckpt.get("date") if isinstance(ckpt, dict) else None
        if stamp is None and self.path.suffix == ".onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(self.path),
                                                   providers=["CPUExecutionProvider"])
            stamp = session.get_modelmeta().custom_metadata_map.get("date")
        return stamp

    @property
    def model(self) -> ModelInfo:
        return self._model

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One Detections per BGR image; boxes in each image's own pixels. The images of
        one call are one batch (letterboxed together, as the ONNX Runtime backend does)."""
        if not images:
            return []
        results = self._yolo.predict(
            list(images), imgsz=self.imgsz, conf=self.confidence, iou=self.iou,
            device=self.device, batch=len(images), verbose=False)
        out = []
        for r in results:
            boxes = r.boxes
            out.append(Detections(
                boxes.xyxy.cpu().numpy().astype(float).reshape(-1, 4),
                boxes.conf.cpu().numpy().astype(float).reshape(-1),
                boxes.cls.cpu().numpy().astype(int).reshape(-1),
                self._names))
        return out


register(UltralyticsConfig, YoloDetector)


def build_untrained(path: str | Path, names: Sequence[str], *, seed: int = 0,
                    onnx: bool = False, imgsz: int = 640) -> Path:
    """Write a randomly initialised YOLOv8n with these class names (no download needed).

    Its detections mean nothing, but it runs exactly like a trained model of the default
    architecture: plumbing tests and speed benchmarks use it where the trained weights are
    not the point. Returns the .pt path, or the exported .onnx path when `onnx` is set.
    """
    YOLO = import_ultralytics().YOLO
    import torch
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
