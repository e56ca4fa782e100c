"""Reading input images into the codec's planar float form, with the decisions a codec must make.

    8-bit L / RGB           as is
    16-bit grey (I;16, I)   bit_depth 16
    RGB with R == G == B    coded as 1 grey channel, decoded back to RGB (common for Navcam JPEGs)
    P (palette), 1, CMYK    converted to RGB / L
    LA, RGBA, PA            alpha dropped, with a warning (REMAC codes no alpha)
"""
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from bitstream.errors import RemacError

Image.MAX_IMAGE_PIXELS = 2 ** 28


@dataclass
class SourceImage:
    pixels: np.ndarray           # (C, H, W) float32 in [0, 1], C = coded channels (1 or 3)
    output_channels: int         # 1 or 3
    bit_depth: int               # 8 or 16
    warnings: list = field(default_factory=list)

    @property
    def height(self):
        return self.pixels.shape[1]

    @property
    def width(self):
        return self.pixels.shape[2]


def load_image(source, name: str = None) -> SourceImage:
    """source: path or bytes. Raises RemacError with a one-line reason for anything unusable."""
    name = name or str(source)
    try:
        im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        w, h = im.size
        if w > 65535 or h > 65535 or w * h > 2 ** 28:
            raise RemacError(f"{name}: image {w}x{h} exceeds REMAC's limits (sides <= 65535, <= 2^28 pixels)")
        im.load()
        return from_pil(im, name)
    except RemacError:
        raise
    except MemoryError:
        raise
    except FileNotFoundError:
        raise RemacError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise RemacError(f"{name}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise RemacError(f"{name}: not a readable image (unknown or damaged format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RemacError(f"{name}: cannot decode image ({exc})") from None
    except Image.DecompressionBombError:
        raise RemacError(f"{name}: image too large (more than {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except Exception as exc:        # Pillow raises many types on hostile files
        raise RemacError(f"{name}: cannot decode image ({type(exc).__name__}: {exc})") from None


def from_pil(im: Image.Image, name: str = "image") -> SourceImage:
    warnings = []
    if im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        warnings.append(f"{name}: alpha channel dropped (REMAC codes no alpha)")
        im = im.convert("RGBA" if im.mode in ("RGBA", "RGBa", "P", "PA") else "LA")
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.int64)
        if a.min() < 0 or a.max() > 65535:
            raise RemacError(f"{name}: integer samples outside 0..65535 are not supported")
        return SourceImage((a.astype(np.float32) / 65535)[None], 1, 16, warnings)
    if im.mode == "F":
        raise RemacError(f"{name}: floating-point images are not supported (convert to 8 or 16 bit)")
    if im.mode not in ("L", "RGB"):
        im = im.convert("L" if im.mode == "1" else "RGB")
    a = np.asarray(im, dtype=np.uint8)
    if a.ndim == 2:
        return SourceImage((a.astype(np.float32) / 255)[None], 1, 8, warnings)
    if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
        return SourceImage((a[..., 0].astype(np.float32) / 255)[None], 3, 8, warnings)
    return SourceImage(a.transpose(2, 0, 1).astype(np.float32) / 255, 3, 8, warnings)

