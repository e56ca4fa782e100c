"""Static int8 quantization of the rover's ONNX analysis transform (onnxruntime.quantization).

    encoder.onnx (float) --calibrate on training crops at several qualities--> encoder.int8.onnx

The float analysis does not touch decodability (only z_hat and the integer entropy path do), so an
int8 encoder only moves rate-distortion and speed; `python -m evaluation --encoder int8` measures the first,
`evaluation.timing` the second. `python -m training.quantize grey` (run after training.export, which rewrites model.json).
"""
import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from remac.bitstream import modelfile
from remac.bitstream.modelfile import ASSETS as BITSTREAM_ASSETS
from training.data import load_set, train_folders
from remac.rover_encoder.analysis import ASSETS, gain_for_quality
from training import DATA



class Crops(CalibrationDataReader):
    """256² training images, each fed at one of a spread of qualities (the gain scales h_a's input)."""

    def __init__(self, name: str, data_dir: str, count: int = 48):
        model = modelfile.load(name)
        images, _ = load_set(data_dir, train_folders(name), model.channels, limit=None)
        rng = np.random.default_rng(0)
        pick = rng.choice(len(images), size=min(count, len(images)), replace=False)
        qualities = np.linspace(0, 100, len(pick)).round().astype(int)
        self.feeds = iter([{"x": images[i:i + 1].numpy().astype(np.float32) / 255,
                            "gain": gain_for_quality(model, int(q) * 100).reshape(1, -1, 1, 1)}
                           for i, q in zip(pick, qualities)])

    def get_next(self):
        return next(self.feeds, None)


# convs left in float, by weight name: the last analysis conv (it writes y: its int8 rounding
# lands straight on the latent and cost ~9% BD-rate alone), the one before it, and the klt
# architecture's block transform (it writes y too; it is ~3% of the rover's MACs)
KEEP_FLOAT = ("rest.4.weight", "rest.2.weight", "proj.weight")
OPTIONAL = {"proj.weight"}      # only the klt architecture has it


def conv_nodes(path: Path, weights) -> list:
    """Names of the Conv nodes of an ONNX graph whose weight input is one of `weights` (names in
    OPTIONAL may be absent)."""
    import onnx
    graph = onnx.load(str(path)).graph
    nodes = {n.input[1]: n.name for n in graph.node if n.op_type == "Conv"}
    weights = [w for w in weights if w in nodes or w not in OPTIONAL]
    missing = [w for w in weights if w not in nodes]
    if missing:
        raise SystemExit(f"{path}: no Conv node with weight {', '.join(missing)}")
    return [nodes[w] for w in weights]


def quantize(name: str, data_dir: str, out: Path = None, keep_float=KEEP_FLOAT) -> Path:
    """Writes the int8 encoder; when it goes to the shipped place, records its sha256 in the
    model's model.json (outside the model ID: the bitstream does not depend on it)."""
    src = ASSETS / name / "encoder.onnx"
    shipped = out is None
    out = out or ASSETS / name / "encoder.int8.onnx"
    # reduce_range: 7-bit weights. x86 CPUs without VNNI (AVX2 only, e.g. the AMD EPYC build machines)
    # sum u8 x s8 pairs in saturating 16-bit lanes: with 8-bit weights the shipped graph's z moved
    # by up to 11 quantization steps there (+16 % rate on a 256² image at q60) and not on a VNNI
    # Xeon; with 7 bits z stays within 1.1 steps of the float graph on both
    quantize_static(str(src), str(out), Crops(name, data_dir), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv"], nodes_to_exclude=conv_nodes(src, keep_float))
    if shipped:
        meta_path = BITSTREAM_ASSETS / name / "model.json"
        meta = json.loads(meta_path.read_text())
        meta["encoder_int8_sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=("grey", "colour"))
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep-float", default=",".join(KEEP_FLOAT), help="weights of convs left in float")
    args = ap.parse_args(argv)
    for name in args.names:
        keep = tuple(w for w in args.keep_float.split(",") if w)
        print(quantize(name, args.data, args.out if len(args.names) == 1 else None, keep))


if __name__ == "__main__":
    main()
