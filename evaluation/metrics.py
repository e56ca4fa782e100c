"""Image quality metrics with no torch dependency (the tests use them too)."""
import math

import numpy as np


def peak_for(bit_depth: int) -> int:
    """The largest sample of a bit_depth-bit image (4095 for 12-bit): PSNR's peak."""
    return (1 << bit_depth) - 1


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two same-shape integer images; peak: peak_for(the images' true bit depth)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(peak ** 2 / max(mse, 1e-10))
