"""The ONNX Runtime backend: YOLO detection exports run without torch or ultralytics.

For edge and CPU hosts: the base install runs it. Pre- and post-processing follow
ultralytics' `predict()` step for step, so the same `.onnx` gives the same detections
through either backend (tests/detectors/test_backends.py measures how close):

- letterbox: scale the longest side to `imgsz` (cv2.INTER_LINEAR), pad with grey 114,
  centred; when a batch's images share one shape and the model takes any input size,
  pad only to a multiple of the model's stride (ultralytics' "minimum rectangle");
- BGR -> RGB, 0..1 float32, NCHW, one `InferenceSession.run` per batch;
- decode the (batch, 4 + classes, anchors) output: best class per anchor, kept when its
  score exceeds `confidence`; class-aware NMS at `iou` (OpenCV `NMSBoxesBatched`), at
  most 300 boxes per image, best first; boxes mapped back to the image and clipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
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
from storage.frames import ModelInfo

log = logging.getLogger(__name__)

PAD_VALUE = 114
MAX_DETECTIONS = 300  # per image, as ultralytics' max_det
MAX_CANDIDATES = 30_000  # boxes entering NMS at most, best first (ultralytics' max_nms)


class OnnxRuntimeConfig(BackendConfig):
    """ONNX Runtime on a YOLO detection export (`citywatch model export`)."""

    type: Literal["onnxruntime"] = Field("onnxruntime", title="Backend",
                                         description="ONNX Runtime: .onnx weights, no torch.")
    providers: list[str] = Field(
        ["CPUExecutionProvider"], min_length=1, title="ONNX Runtime execution providers",
        description="In order of preference, e.g. [CUDAExecutionProvider, "
        "CPUExecutionProvider]; each must be available in the installed onnxruntime.")
    threads: int = Field(
        0, ge=0, title="Threads per inference",
        description="ONNX Runtime intra-op threads; 0 lets it use one per core.")


@dataclass(frozen=True, slots=True)
class Letterbox:
    """Where an image sits inside its letterboxed input: scale per axis and top-left pad."""

    gain_x: float
    gain_y: float
    left: int
    top: int


def letterbox(image: np.ndarray, shape: tuple[int, int], *, auto: bool,
              stride: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio into `shape` (h, w) and pad, exactly as ultralytics'
    LetterBox: same rounding, same interpolation, same grey. `auto` pads only up to a
    multiple of `stride` instead of the full shape."""
    h0, w0 = image.shape[:2]
    r = min(shape[0] / h0, shape[1] / w0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = shape[1] - new_w, shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    if (w0, h0) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                               value=(PAD_VALUE,) * 3)
    return image, Letterbox(new_w / w0, new_h / h0, left, top)


def decode(output: np.ndarray, confidence: float, iou: float) -> tuple[np.ndarray, ...]:
    """One image's raw (4 + classes, anchors) output -> kept (xyxy, score, class_id),
    in the letterboxed input's pixels, best first."""
    pred = output.T
    scores_all = pred[:, 4:]
    class_id = scores_all.argmax(1)
    score = scores_all[np.arange(len(pred)), class_id]
    keep = score > confidence
    xywh, score, class_id = pred[keep, :4], score[keep], class_id[keep]
    if len(score) > MAX_CANDIDATES:
        best = np.argsort(-score, kind="stable")[:MAX_CANDIDATES]
        xywh, score, class_id = xywh[best], score[best], class_id[best]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    if not len(score):
        return xyxy, score, class_id
    # OpenCV takes (x, y, w, h) boxes; float arrays select its Rect2d overload (no rounding).
    tlwh = np.concatenate([xyxy[:, :2], xywh[:, 2:]], 1).astype(np.float64)
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(tlwh, score.astype(np.float32),
                                              class_id.astype(np.int32), confidence, iou),
                      dtype=int).reshape(-1)[:MAX_DETECTIONS]
    return xyxy[kept], score[kept], class_id[kept]


class OnnxRuntimeDetector:
    """Batched YOLO inference on BGR images with ONNX Runtime."""

    def __init__(self, config: OnnxRuntimeConfig):
        import onnxruntime as ort

        path = weights_file(config, (".onnx",))
        unknown = [p for p in config.providers if p not in ort.get_available_providers()]
        if unknown:
            raise DetectorError(f"ONNX Runtime execution providers not available here: "
                                f"{', '.join(unknown)} (available: "
                                f"{', '.join(ort.get_available_providers())})")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph fusion
        if config.threads:
            options.intra_op_num_threads = config.threads
        try:
            self._session = ort.InferenceSession(str(path), options, providers=config.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DetectorError(f"cannot load {path}: {exc}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if "names" not in meta:
            raise DetectorError(f"{path.name} carries no class names in its metadata; export it "
                                f"with `citywatch model export` (ultralytics) or add 'names'")
        if meta.get("task", "detect") != "detect" or meta.get("end2end", "False") == "True":
            raise DetectorError(f"{path.name} is not a YOLO detection export with a "
                                f"(batch, 4 + classes, anchors) output (task "
                                f"{meta.get('task')!r}, end2end {meta.get('end2end')!r})")
        self._names = parse_names(meta["names"])
        self.stride = int(meta.get("stride", 32))
        self.confidence, self.iou = config.confidence, config.iou
        (inp,) = self._session.get_inputs()
        self._input = inp.name
        batch, _, height, width = inp.shape
        # A static export takes one size (and maybe one batch); a dynamic one any.
        self._fixed_batch = batch if isinstance(batch, int) else None
        fixed = isinstance(height, int) and isinstance(width, int)
        self._shape = (height, width) if fixed else (config.imgsz, config.imgsz)
        self._dynamic = not fixed
        out = self._session.get_outputs()[0].shape
        if isinstance(out[1], int) and out[1] != 4 + len(self._names):
            raise DetectorError(f"{path.name}: output has {out[1]} rows per anchor, but 4 + "
                                f"{len(self._names)} classes were expected")
        self._model = model_info(path, file_sha256(path), meta.get("date"))

    @property
    def model(self) -> ModelInfo:
        return self._model

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One Detections per BGR image; boxes in each image's own pixels."""
        if not images:
            return []
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise DetectorError(f"images must be BGR uint8 arrays of shape (h, w, 3), but "
                                    f"got {im.dtype} {im.shape}")
        auto = self._dynamic and len({im.shape for im in images}) == 1
        boxed = [letterbox(im, self._shape, auto=auto, stride=self.stride) for im in images]
        blob = np.stack([b for b, _ in boxed])[..., ::-1].transpose(0, 3, 1, 2)
        blob = np.ascontiguousarray(blob, dtype=np.float32) / 255.0
        outputs = self._run(blob)
        results = []
        for image, (_, placed), output in zip(images, boxed, outputs, strict=True):
            xyxy, score, class_id = decode(output, self.confidence, self.iou)
            xyxy = (xyxy - [placed.left, placed.top, placed.left, placed.top]) / [
                placed.gain_x, placed.gain_y, placed.gain_x, placed.gain_y]
            h, w = image.shape[:2]
            xyxy = xyxy.clip(0, [w, h, w, h])
            results.append(Detections(xyxy.astype(float).reshape(-1, 4),
                                      score.astype(float).reshape(-1),
                                      class_id.astype(int).reshape(-1), self._names))
        return results


    def _run(self, blob: np.ndarray) -> np.ndarray:
        """Raw outputs for an NCHW batch; a model exported for a fixed batch size gets
        batches of that size (the last one padded, its padding dropped)."""
        step = self._fixed_batch or len(blob)
        outputs = []
        for i in range(0, len(blob), step):
            chunk = blob[i:i + step]
            if len(chunk) < step:
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]),
                                                        chunk.dtype)])
            outputs.append(self._session.run(None, {self._input: chunk})[0][:len(blob) - i])
        return np.concatenate(outputs)


register(OnnxRuntimeConfig, OnnxRuntimeDetector)
