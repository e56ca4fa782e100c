"""Image quality metrics with no torch dependency (the tests use them too)."""
import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two same-shape integer images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(peak ** 2 / max(mse, 1e-10))
