#!/usr/bin/env bash
# Reproduce the default detection model (detectors/models/citywatch-default.pt).
#
#   detectors/models/train_default.sh OUT_DIR [DEVICE] [TIME_H] [N_TRAIN] [N_VAL] [WORKERS]
#
# Renders the synthetic training set (seed 1), trains YOLOv8n from scratch for TIME_H
# hours at 512 px, and leaves in OUT_DIR: citywatch-default.pt (optimizer stripped),
# results.csv (per-epoch losses and validation mAP) and data.yaml (class counts).
# The held-out evaluation (seed 777, never used for training) and the ONNX export are
# separate steps, see detectors/models/README.md.
set -euo pipefail
OUT=${1:?usage: train_default.sh OUT_DIR [DEVICE] [TIME_H] [N_TRAIN] [N_VAL] [WORKERS]}
DEVICE=${2:-0}
TIME_H=${3:-0.105}
N_TRAIN=${4:-10000}
N_VAL=${5:-600}
WORKERS=${6:-16}
WORK=${CITYWATCH_TRAIN_WORK:-${TMPDIR:-/tmp}/citywatch-train}
# a hard stop a little after the time budget, so weights are always copied out
HARD_STOP_S=$(python3 -c "print(int(${TIME_H} * 3600 + 60))")
mkdir -p "$OUT" "$WORK"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False PYTHONUNBUFFERED=1

python3 -m detectors.training dataset --out "$WORK/data" --train "$N_TRAIN" --val "$N_VAL" \
    --seed 1 --min-box-px 5 --workers "$WORKERS"
cp "$WORK/data/data.yaml" "$OUT/data.yaml"

status=0
timeout -k 30 -s INT "$HARD_STOP_S" python3 -m detectors.training train --data "$WORK/data/data.yaml" \
    --out "$WORK/run" --time "$TIME_H" --epochs 300 --imgsz 512 --batch 64 --device "$DEVICE" \
    --workers "$WORKERS" --seed 0 --lr0 0.002 --optimizer AdamW --cache || status=$?
echo "training exit status: $status"

weights="$WORK/run/weights/best.pt"
[ -f "$weights" ] || weights="$WORK/run/weights/last.pt"
python3 -c "import sys; from detectors.training import strip_weights; strip_weights(sys.argv[1], sys.argv[2])" \
    "$weights" "$OUT/citywatch-default.pt"
cp "$WORK/run/results.csv" "$OUT/results.csv" 2>/dev/null || true
ls -la "$OUT"
