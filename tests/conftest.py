"""Shared fixtures: the small real images in tests/data and helpers to measure them."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.metrics import psnr  # noqa: F401  (the benchmarks' PSNR, re-exported for the tests)

DATA = Path(__file__).parent / "data"
GREY = DATA / "navcam_gray.png"          # 256x256 crop of a native-resolution Navcam frame (L)
COLOUR = DATA / "mastcam_rgb.png"        # 256x256 Mastcam crop (RGB)
GOLDEN_GREY = DATA / "version_1_0.rmc"    # a format-1.0 stream (golden stream of grey release 3cfa6a5f57ec974b, pruned from the store)
RGB3 = DATA / "navcam_rgb3.jpg"          # 256x256 Navcam JPEG stored with three identical channels


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="session")
def default_library():
    from remac.bitstream import library
    return library.load()
