"""Refinement layers (staged downlink, issue 31 item 1): what a base at quality A plus a refinement
layer to quality B costs against a one-shot stream at B, per image, with PSNR and the rover's time.

    python -m scripts.bench_refine                   # the default set below, A = 20, B = 75
    python -m scripts.bench_refine -a 20 -b 75 -b 90 IMAGE...   # a chain A -> B1 -> B2 ...
    python -m scripts.bench_refine --colour                      # RGB: Y, Cb, Cr planes

The default set: tests/data/navcam_gray.png, the first two val/gray frames (256², luma) and the
centre 512² crops of the first two val/gray_native frames; with --colour, tests/data/mastcam_rgb.png
and the first two val/color crops (512², as they are). Every stream is coded without references
(as the refinement is), by the same API remac-encode runs (rover_encoder.encode / .refine);
PSNR from the ground decoder (ground_decoder.decode, 1 thread). Because a layer reproduces the
one-shot stream's symbols, "matched PSNR" is the same PSNR: the table shows both. Rover time: one
process, 1 thread, best of 2, excluding imports and model loading; the refinement includes
re-reading the base (the integer entropy path) and analysing the image again.
"""
import argparse
import glob
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
VAL = ROOT.parent / "shared" / "data" / "val"

from evaluation.metrics import psnr
from remac.bitstream.spec import quality_steps
from remac.ground_decoder.decode import decode
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import from_pil
from remac.rover_encoder.refine import encode_refinement
from remac.rover_encoder.options import EncodeOptions


def default_set(colour: bool = False) -> list:
    if colour:
        return [(str(ROOT / "tests" / "data" / "mastcam_rgb.png"), None)] + \
            [(f, None) for f in sorted(glob.glob(str(VAL / "color" / "*.png")))[:2]]
    files = [(str(ROOT / "tests" / "data" / "navcam_gray.png"), None)]
    files += [(f, None) for f in sorted(glob.glob(str(VAL / "gray" / "*.jpg")))[:2]]
    files += [(f, 512) for f in sorted(glob.glob(str(VAL / "gray_native" / "*.png")))[:2]]
    return files


def load(path: str, crop: int = None, mode: str = "L") -> Image.Image:
    im = Image.open(path).convert(mode)
    if crop:
        left, top = (im.width - crop) // 2, (im.height - crop) // 2
        im = im.crop((left, top, left + crop, top + crop))
    return im


def timed(fn):
    best, out = None, None
    for _ in range(2):
        t = time.perf_counter()
        out = fn()
        best = min(best or 1e9, time.perf_counter() - t)
    return out, 1000 * best


def measure(path: str, crop, qa: float, qbs: list, mode: str = "L") -> dict:
    im = load(path, crop, mode)
    x, img = np.asarray(im), from_pil(im, Path(path).name)
    base = encode(img, EncodeOptions(quality_steps(qa)))
    streams = [base.data]
    sent = len(base.data)                   # bytes on the downlink so far, resending each quality whole
    row = {"image": Path(path).name + (f" ({crop}² crop)" if crop else ""), "base": len(base.data),
           "psnr_base": psnr(x, decode(base.data, threads=1).image), "layers": []}
    for qb in qbs:
        one, t_one = timed(lambda: encode(img, EncodeOptions(quality_steps(qb))))
        layer, t_layer = timed(lambda: encode_refinement(img, streams, EncodeOptions(quality_steps(qb))))
        layered = decode(layer.data, threads=1, bases=streams).image
        shot = decode(one.data, threads=1).image
        streams = streams + [layer.data]
        row["layers"].append({"quality": qb, "one_shot": len(one.data), "layer": len(layer.data),
                              "psnr_one_shot": psnr(x, shot), "psnr_layered": psnr(x, layered),
                              "same_pixels": bool(np.array_equal(shot, layered)),
                              "ratio": sum(map(len, streams)) / len(one.data),
                              "resend": (sent + len(one.data)) / len(one.data),
                              "ms_one_shot": t_one, "ms_layer": t_layer})
        sent += len(one.data)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("-a", type=float, default=20, help="base quality")
    ap.add_argument("-b", type=float, action="append", help="layer quality (repeat for a chain) [75]")
    ap.add_argument("--colour", action="store_true", help="RGB images (luma + chroma planes) instead of grey")
    args = ap.parse_args()
    files = [(f, None) for f in args.images] or default_set(args.colour)
    qbs = args.b or [75]
    print(f"| image | base q{args.a:g} bytes (PSNR) | " + " | ".join(
        f"q{q:g}: one-shot bytes (PSNR) | layer bytes (PSNR) | all layers / one-shot | resend / one-shot | "
        f"rover ms one-shot / layer" for q in qbs) + " |")
    print("|---|---|" + "---|---|---|---|---|" * len(qbs))
    ratios, resends = [[] for _ in qbs], [[] for _ in qbs]
    for path, crop in files:
        r = measure(path, crop, args.a, qbs, "RGB" if args.colour else "L")
        cells = [f"{r['base']} ({r['psnr_base']:.2f})"]
        for k, lay in enumerate(r["layers"]):
            ratios[k].append(lay["ratio"])
            resends[k].append(lay["resend"])
            same = "" if lay["same_pixels"] else " *"
            cells += [f"{lay['one_shot']} ({lay['psnr_one_shot']:.2f})", f"{lay['layer']} ({lay['psnr_layered']:.2f}){same}",
                      f"{lay['ratio']:.3f}", f"{lay['resend']:.3f}", f"{lay['ms_one_shot']:.0f} / {lay['ms_layer']:.0f}"]
        print(f"| {r['image']} | " + " | ".join(cells) + " |", flush=True)
    cells = ["**mean**", ""]
    for r, s in zip(ratios, resends):
        cells += ["", "", f"**{np.mean(r):.3f}**", f"{np.mean(s):.3f}", ""]
    print("| " + " | ".join(cells) + " |")
    print("\n(* the layered image differs from the one-shot stream's: some symbol left the interval below)")


if __name__ == "__main__":
    main()
