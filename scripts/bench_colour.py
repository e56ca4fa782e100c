"""Colour transforms head to head: the image's own (adaptive) against fixed BT.601, real coder and
ground decoder, on val/color and its variants (other white balance, desaturated, 2x downsampled).

    python -m scripts.bench_colour [--data ../shared/data] [--limit N] [--out R.json]

Each image of each set is coded at QUALITIES both ways (remac.rover_encoder.api.encode, shipped
library, 1 thread), decoded (1 thread), PSNR on the 8-bit RGB image; per set and way the mean bpp
and PSNR per quality, and BD-rate (akima, evaluation.rd.bd_rate) of adaptive against BT.601.
"""
import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.metrics import psnr
from evaluation.rd import bd_rate
from evaluation.variants import IMAGE_SUFFIXES, variant
from remac.ground_decoder import api as ground
from remac.rover_encoder import api as rover

QUALITIES = (5, 20, 40, 65, 90)
WAYS = ("bt601", "adaptive")
SETS = ("val/color", "wb", "desat", "half")


def measure(images: list, qualities=QUALITIES) -> dict:
    """[(H,W,3) uint8] -> {way: [(mean bpp, mean PSNR) per quality]}."""
    curves = {}
    for way in WAYS:
        points = []
        for q in qualities:
            bits, pixels, quality = 0, 0, []
            for a in images:
                data = rover.encode(a, q, colour=way, threads=1)
                bits, pixels = bits + 8 * len(data), pixels + a.shape[0] * a.shape[1]
                quality.append(psnr(a, ground.decode(data, threads=1)))
            points.append((bits / pixels, float(np.mean(quality))))
        curves[way] = points
    return curves


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--limit", type=int, help="the first N images of val/color")
    ap.add_argument("--out", help="write the curves and BD-rates as JSON")
    args = ap.parse_args()
    paths = sorted(p for p in (Path(args.data) / "val/color").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    originals = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:args.limit]]
    report = {}
    for name in SETS:
        images = originals if name == "val/color" else [variant(a, name) for a in originals]
        curves = measure(images)
        rate = bd_rate(curves["bt601"], curves["adaptive"])
        report[name] = {"curves": curves, "bd_rate_adaptive_vs_bt601": rate}
        print(f"{name:10s} " + "  ".join(f"{way} " + " ".join(f"{b:.3f}/{p:.2f}" for b, p in curves[way]) for way in WAYS)
              + f"  BD-rate adaptive vs BT.601: {rate:+.2f} %", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
