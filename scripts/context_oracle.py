"""Upper bound of a neighbour-magnitude context for channels 1..M-1 (session 9: not worth building).

For each image and quality the shipped model codes the luma as the rover does (floors, channel-0
spatial context, RDO; no references, one tile), then every channel >= 1 is split into the three
passes channel 0 uses (bitstream.spatial.pass_of). A later-pass position gets a class from its
decoded neighbours in the same channel (mean |s|, 13 classes); the oracle shifts the scale index of
each (quality, slice, pass, class) by the amount that codes that very data cheapest (in-sample: an
upper bound) and prints the later-pass bits before and after.

    python scripts/context_oracle.py [DATA]      (DATA: ../shared/data)
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from remac.bitstream import spatial, spec
from training.calibrate import table_cost
from remac.rover_encoder.prepared import Prepared
from remac.rover_encoder.imageio import load_image

QUALITIES = (5, 35, 65, 90)
THRESHOLDS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)     # on 4 x the neighbours' mean |s|
S_RANGE = 600


def neighbour_class(a: np.ndarray, known: np.ndarray, p: int) -> np.ndarray:
    """a (C,h,w) |symbols|, known (C,h,w) bool -> (C,h,w) class of pass p's neighbour mean."""
    total, count = np.zeros(a.shape), np.zeros(a.shape)
    for di, dj in spatial.NEIGHBOURS[p]:
        ok = spatial._shifted(known, di, dj, False)
        total += np.where(ok, spatial._shifted(a, di, dj, 0), 0)
        count += ok
    mean4 = 4 * total / np.maximum(count, 1)
    return sum((mean4 >= t).astype(int) for t in THRESHOLDS)


def histograms(paths, side=1024) -> tuple:
    """-> ({(quality, slice, pass): (K, T, 2R+1) counts of later-pass symbols}, cost (T, 2R+1))."""
    hist, cost = {}, None
    for path in paths:
        im = Image.open(path).convert("L")
        im = im.crop((0, 0, min(im.size[0], side), min(im.size[1], side)))
        tmp = Path("/tmp") / f"oracle_{path.stem}.png"
        im.save(tmp)
        prep = Prepared(load_image(str(tmp)), None, use_refs=False)
        t = prep.model.y_tables
        cost = table_cost((t.counts, t.offsets, t.sizes), S_RANGE)
        bounds = list(prep.model.net.get("slices", (0, prep.model.m)))
        for q in QUALITIES:
            for _, mu16, idx, y_hat in prep.code(q, keep_tiles=True)[2]:
                s = np.round(y_hat - mu16 / 16).astype(np.int64)
                which = spatial.pass_of(*s.shape[1:])
                for k, (s0, s1) in enumerate(zip(bounds, bounds[1:])):
                    c0 = max(s0, 1)
                    a = np.abs(s[c0:s1])
                    known = np.broadcast_to(which == 0, a.shape).copy()
                    for p in (1, 2):
                        at = np.broadcast_to(which == p, a.shape)
                        cls = neighbour_class(a, known, p)
                        h = hist.setdefault((q, k, p), np.zeros((len(THRESHOLDS) + 1, spec.SCALE_LEVELS, 2 * S_RANGE + 1)))
                        np.add.at(h, (cls[at], idx[c0:s1][at], np.clip(s[c0:s1][at], -S_RANGE, S_RANGE) + S_RANGE), 1)
                        known |= at
    return hist, cost


def oracle(hist: dict, cost: np.ndarray) -> dict:
    """-> {quality: (bits as coded, bits with each class's best index shift)}."""
    levels = np.arange(cost.shape[0])
    out = {}
    for (q, _, _), h in hist.items():
        before = sum((cost * h[c]).sum() for c in range(len(h)))
        after = sum(min((cost[np.clip(levels + d, 0, len(levels) - 1)] * h[c]).sum() for d in range(-12, 13))
                    for c in range(len(h)) if h[c].any())
        b, a = out.get(q, (0.0, 0.0))
        out[q] = (b + before, a + after)
    return out


def main(data="../shared/data"):
    sets = {"val/gray": 6, "val/gray_native": 3, "val/color": 6}
    for folder, n in sets.items():
        paths = sorted(p for p in (Path(data) / folder).iterdir() if p.is_file())[:n]
        for q, (b, a) in sorted(oracle(*histograms(paths)).items()):
            print(f"{folder} q{q}: later-pass bits of channels >= 1 {b:.0f} -> {a:.0f} ({100 * (a / b - 1):+.1f}%)", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
