#!/usr/bin/env bash
# Regenerate docs/BENCHMARKS.md: RD on the validation sets, reference experiments, complexity, timing.
#   BASELINES=DIR reuses classical-codec records from an earlier `python -m evaluation --out` DIR (they do not
#   change with REMAC); without it every baseline is re-measured (slower).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-results}
reuse=()
[ -n "${BASELINES:-}" ] && reuse=(--reuse "$BASELINES" --codecs REMAC)
python -m evaluation "$DATA/val/gray" --out "$OUT/val_gray" --ref-experiments "${reuse[@]}"
python -m evaluation "$DATA/val/gray_native" --out "$OUT/val_gray_native" "${reuse[@]}"
python -m evaluation "$DATA/val/color" --out "$OUT/val_color" "${reuse[@]}"
python -m evaluation "$DATA/val/color" --out "$OUT/val_color_refs" --ref-experiments --limit 8 --codecs REMAC
# int8 vs float rover analysis (8 images per modality)
python -m evaluation "$DATA/val/gray" "$DATA/val/color" --out "$OUT/int8" --codecs REMAC --encoder-experiment --limit 8
python -m evaluation.report "$OUT/val_gray" "$OUT/val_gray_native" "$OUT/val_color" "$OUT/val_color_refs" "$OUT/int8" \
    -o docs/BENCHMARKS.md --commands "BASELINES=${BASELINES:-} bash scripts/benchmarks.sh"
