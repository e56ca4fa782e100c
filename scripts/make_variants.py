"""Harder colour validation sets derived from val/color: another pipeline's white balance, a greyer
palette, another scale. `python scripts/make_variants.py [SRC] [OUT]` writes OUT/color_wb,
OUT/color_desat and OUT/color_half (defaults: ../shared/data/val/color, /work/variants).

    wb      R x 0.82, B x 1.22 (a bluer white balance), clipped
    desat   chroma scaled to 40 % around BT.601 luma (greyer rocks, less saturated)
    half    2x2 box-downsampled (another resolution, different texture statistics)
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114])


def variant(a: np.ndarray, kind: str) -> np.ndarray:
    """(H,W,3) uint8 -> the `kind` variant, uint8."""
    x = a.astype(np.float64) / 255
    if kind == "wb":
        x = x * np.array([0.82, 1.0, 1.22])
    elif kind == "desat":
        y = (x @ LUMA)[..., None]
        x = y + 0.4 * (x - y)
    elif kind == "half":
        h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))
    else:
        raise ValueError(kind)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def main(src="../shared/data/val/color", out="/work/variants"):
    for kind in ("wb", "desat", "half"):
        folder = Path(out) / f"color_{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(Path(src).glob("*.png")):
            Image.fromarray(variant(np.asarray(Image.open(path).convert("RGB")), kind)).save(folder / path.name)
        print(folder)


if __name__ == "__main__":
    main(*sys.argv[1:])
