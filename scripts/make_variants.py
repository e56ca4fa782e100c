"""Harder validation sets derived from val/color (another pipeline's white balance, a greyer palette,
another scale) and val/gray (another block grid). `python -m scripts.make_variants [SRC] [OUT]
[GREY_SRC]` writes OUT/color_wb, OUT/color_desat, OUT/color_half, OUT/color_luma and OUT/gray_shift4 (defaults:
../shared/data/val/color, /work/variants, ../shared/data/val/gray).

    wb      R x 0.82, B x 1.22 (a bluer white balance), clipped
    desat   chroma scaled to 40 % around BT.601 luma (greyer rocks, less saturated)
    half    2x2 box-downsampled (another resolution, different texture statistics)
    luma    (grey) BT.601 luma only, the plane the grey model codes at full size in a colour stream:
            separates the luma network from the chroma planes (measured: vs JPEG 2000 -6.2 %,
            8 images, against -5.4 % for the colour streams: the colour gap is luma)
    shift4  (grey) the top 4 rows and left 4 columns cut off: val/gray are Navcam JPEGs whose 8x8
            grid lines up with the codec's 16x16 blocks; shifted by 4 it no longer does, as in a
            frame cropped or resampled after its JPEG coding (measured: vs JPEG 2000 -16.9 %
            aligned, -9.2 % shifted, 12 images)
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114])


def variant(a: np.ndarray, kind: str) -> np.ndarray:
    """(H,W,3) uint8 -> the `kind` variant, uint8 ((H,W) for luma)."""
    x = a.astype(np.float64) / 255
    if kind == "wb":
        x = x * np.array([0.82, 1.0, 1.22])
    elif kind == "desat":
        y = (x @ LUMA)[..., None]
        x = y + 0.4 * (x - y)
    elif kind == "luma":
        x = x @ LUMA
    elif kind == "half":
        h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))
    else:
        raise ValueError(kind)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def shifted(a: np.ndarray, by: int = 4) -> np.ndarray:
    """(H,W) uint8 -> (H-by, W-by): the top `by` rows and left `by` columns cut off."""
    return a[by:, by:]


def main(src="../shared/data/val/color", out="/work/variants", grey_src="../shared/data/val/gray"):
    folder = Path(out) / "gray_shift4"
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(grey_src).iterdir()):
        Image.fromarray(shifted(np.asarray(Image.open(path).convert("L")))).save(folder / (path.stem + ".png"))
    print(folder)
    for kind in ("wb", "desat", "half", "luma"):
        folder = Path(out) / f"color_{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(Path(src).glob("*.png")):
            Image.fromarray(variant(np.asarray(Image.open(path).convert("RGB")), kind)).save(folder / path.name)
        print(folder)


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(print(__doc__))
    main(*sys.argv[1:])
