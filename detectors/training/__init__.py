"""The project's own detection model: render a dataset, train or fine-tune, export,
evaluate. Apart from the run-time detector (detectors.worker / detectors.yolo never import
it): a training host needs numpy, OpenCV, PyYAML and ultralytics, not the rest of citywatch.

No pretrained weights can be fetched, so the default model (YOLOv8n, the 14 classes of
`simulators.scenes.CLASSES`) is trained on scenes the simulators render, written in the
standard YOLO dataset layout (images/<split>/*.jpg, labels/<split>/*.txt, data.yaml).
Training, export and evaluation take any YOLO-format dataset, and `finetune` adapts the
default model to a city's own labelled frames without losing the classes they lack.

Run as `python -m detectors.training` (the same sub-commands as `citywatch model`).
"""

from detectors.training.common import (
    DEFAULT_IMGSZ,
    DEFAULT_ONNX,
    DEFAULT_PT,
    MODELS_DIR,
    SPLITS,
    TrainingError,
    stdout_to_stderr,
)
from detectors.training.dataset import DatasetSpec, check_dataset, render_dataset, write_data_yaml
from detectors.training.evaluate import (
    ClassMetrics,
    EvalReport,
    FalsePositives,
    evaluate,
    write_reports,
)
from detectors.training.finetune import (
    BeforeAfter,
    ClassMap,
    FineTuneReport,
    finetune,
    load_class_map,
    remap_dataset,
)
from detectors.training.run import (
    TrainResult,
    TrainSettings,
    Transfer,
    export_onnx,
    strip_weights,
    train,
)

__all__ = [
    "BeforeAfter", "ClassMap", "FineTuneReport", "finetune", "load_class_map", "remap_dataset",
    "DEFAULT_IMGSZ", "DEFAULT_ONNX", "DEFAULT_PT", "MODELS_DIR", "SPLITS", "ClassMetrics",
    "DatasetSpec", "EvalReport", "FalsePositives", "TrainResult", "TrainSettings",
    "TrainingError", "Transfer", "check_dataset", "evaluate", "export_onnx", "render_dataset",
    "stdout_to_stderr", "strip_weights", "train", "write_data_yaml", "write_reports",
]
