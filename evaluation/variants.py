"""Harder validation sets derived from the val sets: another pipeline's white balance, a greyer
palette, another scale (val/color) and another block grid (val/gray, val/gray_native).

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
    shift3  (grey) the same cut by 3: an odd offset, off every power-of-two grid (val/gray_native)

GRID_FREE and COLOUR_SETS name the derived sets that ranking decides on (training.rank), as
"<val folder> <kind>".
"""
from pathlib import Path

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114])
SHIFTS = {"shift4": 4, "shift3": 3}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
GRID_FREE = ("val/gray shift4", "val/gray_native shift3")
COLOUR_SETS = ("val/color", "val/color wb", "val/color desat", "val/color half")


def variant(a: np.ndarray, kind: str) -> np.ndarray:
    """(H,W,3) uint8 -> the `kind` colour variant, uint8 ((H,W) for luma)."""
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


def derive(path: Path, kind: str) -> np.ndarray:
    """An image file -> its `kind` variant: shift4/shift3 of its grey pixels, else variant() of its RGB."""
    if kind in SHIFTS:
        return shifted(np.asarray(Image.open(path).convert("L")), SHIFTS[kind])
    return variant(np.asarray(Image.open(path).convert("RGB")), kind)


def write_set(src: Path, kind: str, out: Path, limit: int = None) -> list:
    """Write the `kind` variant of the first `limit` images (by name) of folder `src` into `out`
    as PNGs -> their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    images = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in images[:limit]:
        target = out / (path.stem + ".png")
        Image.fromarray(derive(path, kind)).save(target)
        paths.append(target)
    return paths
