"""Regions of interest (issue 31 item 3): one frame coded at a base quality with and without a
region of interest, bytes and PSNR inside / outside the region, and the rover's time.

    python -m scripts.bench_roi                                  # the default frame and region below
    python -m scripts.bench_roi IMAGE --roi 540,280,200,200 -q 50 --tile 512 --tile 256 --target-bytes N

For every tile side: the plain stream at -q, the stream with --roi (its default quality: -q + 25),
and, with --target-bytes, both again under rate control (--target-bytes 0: the plain stream's size
at -q, so the region is paid for by the rest of the frame). Streams are coded without references (the
ROI is what is measured, not the library), by the API remac-encode runs (rover_encoder.encode);
PSNR from the ground decoder (1 thread) over the region's pixels and over all the others. Rover
time: CPU time of one process, 1 thread, least of 3 (--repeat), excluding imports and model loading.
"""
import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FRAME = ROOT.parent / "shared" / "data" / "val" / "gray_native" / "cw_training_mars_001.png"   # 1024x1024 Navcam
ROI = "540,280,200,200"        # inside one 256-px tile, one 512-px tile

from evaluation.metrics import psnr
from remac.bitstream.spec import quality_steps
from remac.ground_decoder.decode import decode
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import from_pil
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.roi import parse


def timed(fn, repeat: int = 3):
    """-> (fn(), least CPU seconds of `repeat` calls): the process's CPU time, not wall time, as this
    machine is shared with training jobs (one thread: CPU time is the work done)."""
    best, out = None, None
    for _ in range(repeat):
        t = time.process_time()
        out = fn()
        best = min(best or 1e9, time.process_time() - t)
    return out, best


def measure(path, roi: str, q: float, tile: int, target: int = None, repeat: int = 3) -> list:
    """-> rows (label, bytes, quality, ROI quality, PSNR inside, PSNR outside, rover ms)."""
    im = Image.open(path)
    img = from_pil(im, Path(path).name)
    ref = np.asarray(im)
    region = parse(roi)
    inside = np.zeros(ref.shape[:2], bool)
    inside[region.y:region.y + region.height, region.x:region.x + region.width] = True
    rows = []
    runs = [("plain", (), None), ("--roi", (region,), None)]
    if target is not None:
        runs += [("plain, target", (), target), ("--roi, target", (region,), target)]
    for label, regions, budget in runs:
        if budget == 0:
            budget = rows[0][1]
        opts = EncodeOptions(quality_steps(q), target_bytes=budget, tile=tile, roi=regions)
        result, seconds = timed(lambda: encode(img, opts), repeat if budget is None else 1)
        out = decode(result.data, threads=1).image
        h = result.header
        rows.append((label, len(result.data), h.q100 / 100, h.roi_levels[0][0] / 100 if h.roi_levels else None,
                     psnr(ref[inside], out[inside]), psnr(ref[~inside], out[~inside]), 1000 * seconds))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default=str(FRAME))
    ap.add_argument("--roi", default=ROI)
    ap.add_argument("-q", type=float, default=50)
    ap.add_argument("--tile", type=int, action="append")
    ap.add_argument("--target-bytes", type=int, help="also under rate control (0: the plain stream's size)")
    ap.add_argument("--repeat", type=int, default=3, help="rover time: best of this many encodes")
    args = ap.parse_args()
    print(f"{Path(args.image).name}, --roi {args.roi}, -q {args.q:g}")
    print("| tile | stream | bytes | quality (ROI) | PSNR inside | PSNR outside | rover CPU ms |")
    print("|---|---|---|---|---|---|---|")
    for tile in args.tile or [512, 256]:
        for label, size, q, rq, p_in, p_out, ms in measure(args.image, args.roi, args.q, tile, args.target_bytes,
                                                           args.repeat):
            quality = f"{q:g}" + (f" ({rq:g})" if rq is not None else "")
            print(f"| {tile} | {label} | {size} | {quality} | {p_in:.2f} | {p_out:.2f} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    main()
