"""Baseline codec adapters (evaluation.codecs): real round trips on small crops of the test images."""
import numpy as np
import pytest

from evaluation import codecs
from tests.conftest import COLOUR, GREY, pixels, psnr

GREY_CROP = np.ascontiguousarray(pixels(GREY)[:96, :128])       # 96x128: 2^5 | both sides
COLOUR_CROP = np.ascontiguousarray(pixels(COLOUR)[:96, :128])


def _adapter(cls, module=None):
    """An instance of `cls`, skipping where its library is absent or does not work here."""
    if module:
        pytest.importorskip(module)
    adapter = cls()
    if not codecs._works(adapter):
        pytest.skip(f"{adapter.name} does not round-trip here")
    return adapter


CASES = [
    (codecs.JPEG, None),
    (codecs.JPEG2000, None),
    (codecs.WebP, "imagecodecs"),
    (codecs.AVIF, "imagecodecs"),
    (codecs.JPEGXL, "imagecodecs"),
]


def _round_trip(adapter, image, setting):
    data = adapter.encode(image, setting)
    assert isinstance(data, bytes) and len(data) > 0
    out = adapter.decode(data, image.shape)
    assert out.shape == image.shape and out.dtype == np.uint8
    return len(data), psnr(image, out)


@pytest.mark.parametrize("cls,module", CASES, ids=[c.__name__ for c, _ in CASES])
@pytest.mark.parametrize("image", [GREY_CROP, COLOUR_CROP], ids=["grey", "colour"])
def test_round_trip_rate_and_quality_rise(cls, module, image):
    adapter = _adapter(cls, module)
    assert adapter.supports(1 if image.ndim == 2 else 3)
    low_bytes, low_psnr = _round_trip(adapter, image, adapter.settings[0])
    high_bytes, high_psnr = _round_trip(adapter, image, adapter.settings[-1])
    assert high_bytes > low_bytes
    assert high_psnr > low_psnr
    assert high_psnr > 30


def test_icer_grey_round_trip():
    pytest.importorskip("pyicer")
    adapter = _adapter(codecs.ICER, "_pyicer")
    assert adapter.supports(1) and not adapter.supports(3)
    # The full 256x256 image: libicer's 28-byte segment headers swamp tiny crops.
    image = pixels(GREY)
    n_low, low = _round_trip(adapter, image, adapter.settings[0])
    n_high, high = _round_trip(adapter, image, adapter.settings[-1])
    for n, bpp in ((n_low, adapter.settings[0]), (n_high, adapter.settings[-1])):
        assert n <= np.ceil(bpp * image.size / 8)          # the byte quota is met
    assert n_high > n_low and high > low and high > 30
    assert 0 < codecs.ICER.header_bytes(bytes(adapter.encode(image, 1.0))) < image.size // 8


def test_icer_lossless_at_large_quota_and_input_untouched():
    pytest.importorskip("pyicer")
    adapter = _adapter(codecs.ICER, "_pyicer")
    image = GREY_CROP.copy()
    data = adapter.encode(image, 40.0)      # more than the lossless stream (headers included) needs
    assert np.array_equal(image, GREY_CROP)
    assert np.array_equal(adapter.decode(data, image.shape), image)


def test_settings_and_available():
    assert {"JPEG", "JPEG 2000"} <= {a.name for a in codecs.available()}
    for a in codecs.ADAPTERS:
        assert 6 <= len(a.settings) <= 8
    for a in codecs.available():          # settings go from lowest to highest rate
        sizes = [len(a.encode(GREY_CROP, s)) for s in a.settings]
        assert sizes == sorted(sizes), (a.name, sizes)
