"""Command line shared by `citywatch model` and `python -m detectors.training`.

Every sub-command prints its result on stdout (a path, a markdown table, or JSON with
`--json`) and nothing else: ultralytics' progress bars and all logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict
from pathlib import Path

from detectors.offline import MissingExtra
from detectors.training.common import DEFAULT_IMGSZ, DEFAULT_PT, TrainingError, stdout_to_stderr
from detectors.training.dataset import DatasetSpec, render_dataset
from detectors.training.evaluate import evaluate, write_reports
from detectors.training.finetune import finetune
from detectors.training.run import TrainSettings, export_onnx, train


def add_arguments(sub) -> None:
    """Add the dataset / train / export / eval sub-commands to an argparse sub-parser set."""
    p = sub.add_parser("dataset", help="render a synthetic YOLO dataset")
    p.add_argument("--out", required=True, help="dataset folder")
    p.add_argument("--train", type=int, default=0, help="training images")
    p.add_argument("--val", type=int, default=0, help="validation images")
    p.add_argument("--test", type=int, default=0, help="held-out test images")
    p.add_argument("--seed", type=int, required=True, help="base seed of every image")
    p.add_argument("--aerial-fraction", type=float, default=None,
                   help="share of drone views (default 0.6; 0.4 with --randomise)")
    p.add_argument("--randomise", action="store_true",
                   help="the domain-randomised mix the default model is trained on")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--min-box-px", type=float, default=4.0, help="smallest box labelled")
    p.add_argument("--workers", type=int, default=None, help="render processes (default: all CPUs)")
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("train", help="train a detector on a YOLO-format dataset")
    p.add_argument("--data", required=True, help="data.yaml of a YOLO-format dataset")
    p.add_argument("--out", required=True, help="run folder (weights/ lands inside)")
    p.add_argument("--model", default="yolov8n.yaml",
                   help="architecture YAML (random weights) or .pt to fine-tune from")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--time", type=float, default=None, help="stop after this many hours")
    p.add_argument("--imgsz", type=int, default=DEFAULT_IMGSZ)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu, 0, 0,1 ...")
    p.add_argument("--workers", type=int, default=8,
                   help="dataloader workers (on CPU ultralytics uses none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr0", type=float, default=0.002)
    p.add_argument("--optimizer", default="AdamW")
    p.add_argument("--freeze", type=int, default=0, help="keep the first N layers fixed")
    p.add_argument("--warmup-epochs", type=float, default=3.0)
    p.add_argument("--cache", action="store_true", help="hold decoded images in RAM")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("finetune", help="fine-tune the default model on a city's labelled frames")
    p.add_argument("--data", required=True, help="data.yaml of the city's YOLO-format dataset")
    p.add_argument("--class-map", required=True,
                   help="YAML mapping each of the city's class names to a citywatch class or null")
    p.add_argument("--out", required=True, help="folder for the run, the remapped data, the report")
    p.add_argument("--model", default=str(DEFAULT_PT), help=".pt weights to start from")
    p.add_argument("--replay", type=int, default=500,
                   help="rendered images mixed into training (keeps the classes the city lacks)")
    p.add_argument("--freeze", type=int, default=10,
                   help="keep the first N layers fixed (10: YOLOv8n's backbone; 0: none)")
    p.add_argument("--heldout", type=int, default=200, help="rendered held-out images for the report")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--time", type=float, default=None, help="stop after this many hours")
    p.add_argument("--imgsz", type=int, default=DEFAULT_IMGSZ)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--lr0", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("export", help="export .pt weights to ONNX")
    p.add_argument("weights", help=".pt weights")
    p.add_argument("--out", default=None, help="ONNX file (default: next to the weights)")
    p.add_argument("--imgsz", type=int, default=DEFAULT_IMGSZ)
    p.add_argument("--static", action="store_true", help="fixed batch 1 and image size")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("eval", help="precision, recall, mAP and false positives per class")
    p.add_argument("weights", nargs="+", help=".pt or .onnx weights")
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument("--split", default="test")
    p.add_argument("--imgsz", type=int, default=DEFAULT_IMGSZ)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--report", default=None, help="write <report>.md and <report>.json")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_eval)


def _cmd_dataset(args) -> tuple[int, str]:
    counts = {k: n for k, n in (("train", args.train), ("val", args.val), ("test", args.test)) if n}
    if not counts:
        raise TrainingError("nothing to render: give --train, --val and/or --test counts")
    spec = DatasetSpec(counts, args.seed, args.aerial_fraction, args.width, args.height,
                       args.min_box_px, randomise=args.randomise)
    return 0, str(render_dataset(args.out, spec, workers=args.workers))


def _cmd_train(args) -> tuple[int, str]:
    settings = TrainSettings(args.model, args.epochs, args.time, args.imgsz, args.batch,
                             str(args.device), args.workers, args.seed, args.optimizer, args.lr0,
                             args.cache, freeze=args.freeze, warmup_epochs=args.warmup_epochs)
    result = train(args.data, args.out, settings)
    return 0, json.dumps(asdict(result), indent=2, default=str)


def _cmd_finetune(args) -> tuple[int, str]:
    settings = TrainSettings(args.model, args.epochs, args.time, args.imgsz, args.batch,
                             str(args.device), args.workers, args.seed, "AdamW", args.lr0,
                             freeze=args.freeze, warmup_epochs=1.0)
    report = finetune(args.data, args.class_map, args.out, settings=settings, replay=args.replay,
                      heldout=args.heldout)
    return 0, json.dumps(asdict(report), indent=2, default=str, ensure_ascii=False)


def _cmd_export(args) -> tuple[int, str]:
    return 0, str(export_onnx(args.weights, args.out, imgsz=args.imgsz, dynamic=not args.static))


def _cmd_eval(args) -> tuple[int, str]:
    reports = [evaluate(w, args.data, split=args.split, imgsz=args.imgsz, batch=args.batch,
                        device=str(args.device)) for w in args.weights]
    if args.report:
        out = Path(args.report)
        write_reports(reports, out.parent, stem=out.name)
    bad = [r for r in reports if not math.isfinite(r.overall.map50)]
    if args.json:
        return (1 if bad else 0), json.dumps([asdict(r) for r in reports], indent=2, ensure_ascii=False)
    return (1 if bad else 0), "\n".join(r.to_markdown() for r in reports)


def run(args) -> int:
    """Run a parsed sub-command: its work with stdout sent to stderr, then its result on
    stdout. A TrainingError (or ultralytics missing) is reported on stderr, exit status 2."""
    try:
        with stdout_to_stderr():
            code, text = args.func(args)
    except (TrainingError, MissingExtra) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    sys.stdout.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """`python -m detectors.training <dataset|train|export|eval> ...`."""
    parser = argparse.ArgumentParser(prog="python -m detectors.training",
                                     description="Train, export and evaluate the detection model.")
    add_arguments(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)
