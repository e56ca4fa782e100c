#!/usr/bin/env bash
# One GPU burst of the current training run, in one command (device tool: carry .pack):
#
#   bash scripts/gpu_train.sh CONFIG RUN MINUTES OUT
#   e.g. bash scripts/gpu_train.sh training/configs/grey_lap_fine.json grey_lap 8 "$OUT/ckpt"
#
# Resumes from OUT when it already holds RUN (a second burst), else from the committed checkpoint
# models/weights/RUN.safetensors; trains MINUTES in bf16 (the only candidate on CUDA) with large
# batches and crops; writes RUN.safetensors, RUN.opt.pt and RUN.csv to OUT. The data comes from
# .pack/RUN.npz, made beforehand on a machine with ../shared/data:
#   python -m training.pack CONFIG -o .pack/RUN.npz     (as many MiB as the 64 MiB copy leaves)
# Afterwards, on the CPU machine: copy OUT/RUN.safetensors to models/weights/, append OUT/RUN.csv to
# the log, then rank and promote (python -m training.promote).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$1 RUN=$2 MINUTES=$3 OUT=$4
# a promoted run has no checkpoint of its own: it goes on from the shipped one (training.promote)
NAME=$(python -c 'import sys; from training.config import load_config; print(load_config(sys.argv[1])["name"])' "$CONFIG")
INIT=(--init "models/weights/$NAME.safetensors")
[ -f "models/weights/$RUN.safetensors" ] && INIT=(--init "models/weights/$RUN.safetensors")
python -m training.train "$CONFIG" --run-name "$RUN" --pack ".pack/$RUN.npz" --out "$OUT" \
  --minutes "$MINUTES" --batch "${BATCH:-32}" --crop "${CROP:-256}" --threads "${THREADS:-8}" "${INIT[@]}"
