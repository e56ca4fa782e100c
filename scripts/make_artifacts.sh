#!/usr/bin/env bash
# Re-export the shipped artifacts from the training checkpoints and rebuild the default library.
#   models/weights/grey.safetensors          -> ONNX, integer entropy model, ground decoder weights
#                                               (colour images are planes of the grey model, format 3.0)
#   rover_encoder/assets/*/encoder.onnx       -> encoder.int8.onnx (static int8, calibrated on train crops)
#   ../shared/data/refs/{gray,color}/*        -> bitstream/assets/library (default reference library;
#                                               colour references serve colour streams' luma plane)
#   ground decoders + train images            -> models/weights/*_preview.safetensors (preview heads)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
python -m training.export grey
python -m training.quantize grey --data "$DATA"
rm -rf bitstream/assets/library
remac-lib build "$DATA"/refs/gray/* "$DATA"/refs/color/* -o bitstream/assets/library
python -m training.preview grey           # preview head (remac-decode --reduce) for the new decoders
# then: python -m scripts.make_golden (new golden vector), and re-measure tests/test_roundtrip.py FLOORS
