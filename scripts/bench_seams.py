"""Seams at tile borders: PSNR of the pixels within 8 px of a tile border vs the rest, on the
native-resolution validation frames: `python scripts/bench_seams.py [--tile 256] [-q 50 75]`.
The same pixels coded as one tile are the control (content near those lines may simply be harder):
the seam cost is the tiled border-interior gap minus the one-tile gap.

Each tile is coded on its own (independently decodable) but analysed with 64 px of context and
synthesized jointly on the ground, so the borders should cost nothing; this measures it.
"""
import argparse
import math
from pathlib import Path

import numpy as np

from remac.ground_decoder.decode import decode
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val" / "gray_native"


def border_mask(h: int, w: int, tile: int, band: int = 8) -> np.ndarray:
    """True within `band` px of an internal tile border."""
    rows, cols = np.arange(h) % tile, np.arange(w) % tile
    near = lambda v, n: ((v < band) | (v >= tile - band)) & (np.arange(n) >= band) & (np.arange(n) < n - band)
    return near(rows, h)[:, None] | near(cols, w)[None, :]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("-q", "--qualities", type=float, nargs="+", default=[50, 75])
    args = ap.parse_args(argv)
    for q in args.qualities:
        diffs = []
        for path in sorted(DATA.iterdir()):
            img = load_image(path)
            a = (img.pixels[0] * 255).round()
            mask = border_mask(*a.shape, args.tile)
            gap = []
            for tile in (args.tile, 4096):          # tiled, then one tile (the control)
                b = decode(encode(img, q, tile=tile).data).image.astype(np.float64)
                psnr = lambda m: 10 * math.log10(255 ** 2 / np.mean((a[m] - b[m]) ** 2))
                gap.append(psnr(mask) - psnr(~mask))
            diffs.append(gap)
        d = np.array(diffs)
        seam = d[:, 0] - d[:, 1]
        print(f"q{q:g} tile {args.tile}: border - interior {d[:, 0].mean():+.2f} dB tiled, {d[:, 1].mean():+.2f} dB "
              f"as one tile; seam cost {seam.mean():+.2f} dB (worst frame {seam.min():+.2f})")


if __name__ == "__main__":
    main()
