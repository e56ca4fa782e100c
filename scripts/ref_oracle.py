"""How much could any reference image explain? An oracle upper bound for issue 11's reference item.

`python -m scripts.ref_oracle VAL_DIR REF_DIR [--limit N] [--search R]`

For each image x of VAL_DIR (greyscale, 8-bit) and each 16x16 block of it, the best reference block
is searched in every image of REF_DIR (the library's seeds): a translation of the whole reference
found by phase correlation, then a local search of +-R pixels around it per block. The prediction
keeps the block's own mean (the codec sends it: channel 0 of the klt models) and takes only the
reference block's detail (its mean removed):

    pred = mean(x_block) + (ref_block - mean(ref_block))

Per image it prints PSNR of the mean-only prediction (what the block means alone give), of the
best single reference with the oracle's block matching, and the share of blocks whose detail the
reference explains better than nothing (SSE below the mean-only SSE). The matching uses the
original image, so no real decoder can do as well; a reference that does not beat mean-only here
cannot buy rate at matched PSNR.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

B = 16


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), np.float64)


def blocks(a: np.ndarray) -> np.ndarray:
    """(H, W) -> (H/B, W/B, B, B), cropped to whole blocks."""
    h, w = a.shape[0] // B * B, a.shape[1] // B * B
    return a[:h, :w].reshape(h // B, B, w // B, B).swapaxes(1, 2)


def detail(b: np.ndarray) -> np.ndarray:
    """(..., B, B) blocks -> the same with each block's mean removed (what a reference may lend)."""
    return b - b.mean((-2, -1), keepdims=True)


def global_shift(x: np.ndarray, r: np.ndarray) -> tuple:
    """Phase correlation: the (dy, dx) with x[i, j] ~ r[i + dy, j + dx] (both cropped to a common size)."""
    h, w = min(x.shape[0], r.shape[0]), min(x.shape[1], r.shape[1])
    fx, fr = np.fft.fft2(x[:h, :w] - x[:h, :w].mean()), np.fft.fft2(r[:h, :w] - r[:h, :w].mean())
    c = np.fft.ifft2(np.conj(fx) * fr / (np.abs(fx * fr) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(c), c.shape)
    return (dy - h if dy > h // 2 else dy), (dx - w if dx > w // 2 else dx)


def best_detail_sse(x: np.ndarray, r: np.ndarray, search: int) -> np.ndarray:
    """-> (H/B, W/B) the smallest SSE of x's block detail against r's block detail over the search window."""
    dy0, dx0 = global_shift(x, r)
    xd = detail(blocks(x))
    best = np.full(xd.shape[:2], np.inf)
    pad = search + max(abs(dy0), abs(dx0)) + B
    rp = np.pad(r, pad, mode="reflect")
    for dy in range(dy0 - search, dy0 + search + 1):
        for dx in range(dx0 - search, dx0 + search + 1):
            win = rp[pad + dy: pad + dy + x.shape[0], pad + dx: pad + dx + x.shape[1]]
            sse = ((xd - detail(blocks(win))) ** 2).sum((2, 3))
            np.minimum(best, sse, out=best)
    return best


def psnr(sse_total: float, n: int) -> float:
    return 10 * np.log10(255 ** 2 / max(sse_total / n, 1e-12))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("val_dir", type=Path)
    ap.add_argument("ref_dir", type=Path)
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--search", type=int, default=6)
    args = ap.parse_args(argv)
    refs = [load(p) for p in sorted(args.ref_dir.iterdir())]
    rows = []
    for path in sorted(args.val_dir.iterdir())[:args.limit]:
        x = load(path)
        xd = detail(blocks(x))
        n = xd.size
        mean_only = (xd ** 2).sum((2, 3))
        per_ref = [best_detail_sse(x, r, args.search) for r in refs]
        best = min(per_ref, key=lambda s: np.minimum(s, mean_only).sum())
        oracle = np.minimum(best, mean_only)                 # a block may ignore the reference
        rows.append((psnr(mean_only.sum(), n), psnr(oracle.sum(), n), float((best < mean_only).mean())))
        print(f"{path.name}: mean only {rows[-1][0]:.2f} dB, best reference {rows[-1][1]:.2f} dB, "
              f"blocks helped {100 * rows[-1][2]:.0f} %", flush=True)
    a = np.array(rows)
    print(f"mean over {len(rows)}: mean only {a[:, 0].mean():.2f} dB, best reference {a[:, 1].mean():.2f} dB "
          f"(+{(a[:, 1] - a[:, 0]).mean():.2f}), blocks helped {100 * a[:, 2].mean():.0f} %")


if __name__ == "__main__":
    sys.exit(main())
