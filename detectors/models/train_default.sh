#!/usr/bin/env bash
# Reproduce the default detection model (detectors/models/citywatch-default.pt).
#
#   detectors/models/train_default.sh OUT_DIR [DEVICE] [TIME_H] [N_TRAIN] [N_VAL] [WORKERS] [START]
#
# Renders the domain-randomised training set (seed 1) and two held-out sets (the plain
# scenes the simulators show, seed 777; randomised scenes, seed 778), fine-tunes START
# (default: the previous default model) for TIME_H hours at 640 px, and leaves in OUT_DIR:
# citywatch-default.pt (optimizer stripped), train.json (the transfer check and first
# losses), results.csv (per-epoch losses and validation mAP), data.yaml (class counts),
# eval-heldout.{md,json} (before and after, on both held-out sets).
# The ONNX export is a separate CPU step, see detectors/models/README.md.
set -euo pipefail
OUT=${1:?usage: train_default.sh OUT_DIR [DEVICE] [TIME_H] [N_TRAIN] [N_VAL] [WORKERS] [START]}
DEVICE=${2:-0}
TIME_H=${3:-0.08}
N_TRAIN=${4:-6000}
N_VAL=${5:-300}
WORKERS=${6:-16}
START=${7:-detectors/models/citywatch-default.pt}
N_HELDOUT=${N_HELDOUT:-500}
SEED=${SEED:-1}
AERIAL=${AERIAL:-}  # share of drone views; empty: the recipe's 0.4
LR0=${LR0:-0.002}
EVAL=${EVAL:-1}
IMGSZ=${IMGSZ:-640}
BATCH=${BATCH:-64}
WORK=${CITYWATCH_TRAIN_WORK:-${TMPDIR:-/tmp}/citywatch-train}
# a hard stop a little after the time budget, so weights are always copied out
HARD_STOP_S=$(python3 -c "print(int(${TIME_H} * 3600 + 90))")
mkdir -p "$OUT" "$WORK"
cp "$START" "$WORK/start.pt"  # START may be the file this run replaces
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False PYTHONUNBUFFERED=1
t0=$(date +%s)
say() { echo "[$(( $(date +%s) - t0 )) s] $*" >&2; }

say "rendering"
python3 -m detectors.training dataset --out "$WORK/data" --train "$N_TRAIN" --val "$N_VAL" \
    --seed "$SEED" --randomise ${AERIAL:+--aerial-fraction "$AERIAL"} --width 640 --height 480 \
    --min-box-px 5 --workers "$WORKERS" >/dev/null
if [ "$EVAL" = 1 ]; then
    python3 -m detectors.training dataset --out "$WORK/heldout" --test "$N_HELDOUT" --seed 777 \
        --min-box-px 5 --workers "$WORKERS" >/dev/null
    python3 -m detectors.training dataset --out "$WORK/heldout-rand" --test "$N_HELDOUT" --seed 778 \
        --randomise --width 640 --height 480 --min-box-px 5 --workers "$WORKERS" >/dev/null
fi
cp "$WORK/data/data.yaml" "$OUT/data.yaml"

say "training"
status=0
timeout -k 30 -s INT "$HARD_STOP_S" python3 -m detectors.training train --data "$WORK/data/data.yaml" \
    --out "$WORK/run" --model "$WORK/start.pt" --time "$TIME_H" --epochs 300 --imgsz "$IMGSZ" \
    --batch "$BATCH" --device "$DEVICE" --workers "$WORKERS" --seed 0 --lr0 "$LR0" \
    --optimizer AdamW --warmup-epochs 1 --cache >"$OUT/train.json" || status=$?
say "training exit status: $status"

weights="$WORK/run/weights/best.pt"
[ -f "$weights" ] || weights="$WORK/run/weights/last.pt"
python3 -c "import sys; from detectors.training import strip_weights; strip_weights(sys.argv[1], sys.argv[2])" \
    "$weights" "$OUT/citywatch-default.pt" >&2
cp "$WORK/run/results.csv" "$OUT/results.csv" 2>/dev/null || true

say "evaluating"
[ "$EVAL" = 1 ] && for set in heldout heldout-rand; do
    python3 -m detectors.training eval "$WORK/start.pt" "$OUT/citywatch-default.pt" \
        --data "$WORK/$set/data.yaml" --split test --imgsz "$IMGSZ" --device "$DEVICE" \
        --report "$OUT/eval-$set" >/dev/null
done
say "done"
ls -la "$OUT" >&2
