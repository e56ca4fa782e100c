"""Reading input images into the codec's planar float form, with the decisions a codec must make.

    8-bit L / RGB           as is
    16-bit grey (I;16, I)   bit_depth 16, or the true depth (10, 12, 14) from the PNG sBIT chunk or
                            --bit-depth: samples 0..2^D-1, normalised by 2^D-1
    RGB with R == G == B    coded as 1 grey channel, decoded back to RGB (common for Navcam JPEGs)
    P (palette), 1, CMYK    converted to RGB / L
    LA, RGBA, PA            alpha dropped, with a warning (REMAC codes no alpha)
Text chunks, EXIF and XMP are kept in SourceImage.metadata (the stream's `meta` segment).
PDS archive products are read by rover_encoder/pds.py and pass through from_samples, as images do.
"""
import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from remac.bitstream.errors import RemacError
from remac.bitstream.metadata import Metadata

BIT_DEPTHS = (8, 10, 12, 14, 16)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Image.MAX_IMAGE_PIXELS = 2 ** 28


@dataclass
class SourceImage:
    """An image to code. Read from a file it holds its integer samples as read (1, 2 or 4 bytes each)
    and converts to float only the window asked for (`window`, one tile's analysis at a time): a
    16-Mpixel 8-bit frame then costs 16 MiB while it is coded, not 64 as float32."""
    samples: np.ndarray          # (C, H, W) integers 0..peak, or float32 in [0, 1] (peak None); C = 1 or 3
    output_channels: int         # 1 or 3
    bit_depth: int               # 8, 10, 12, 14 or 16: samples were 0..2^bit_depth-1
    warnings: list = field(default_factory=list)
    metadata: Metadata = field(default_factory=Metadata)
    peak: int = None             # integer samples' full scale (2^bit_depth - 1); None: samples are float

    @property
    def pixels(self) -> np.ndarray:
        """(C, H, W) float32 in [0, 1]: the whole frame (converted anew from integer samples)."""
        return self.window(0, self.height, 0, self.width)

    @pixels.setter
    def pixels(self, value: np.ndarray):
        self.samples, self.peak = value, None

    def window(self, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """(C, bottom-top, right-left) float32 in [0, 1]: samples / peak on that box only (the same
        values as the whole frame's conversion: it is element by element)."""
        box = self.samples[:, top:bottom, left:right]
        return box if self.peak is None else unit_range(box, self.peak)

    @property
    def channels(self):
        return self.samples.shape[0]

    @property
    def height(self):
        return self.samples.shape[1]

    @property
    def width(self):
        return self.samples.shape[2]


def png_sbit(data: bytes):
    """Significant bits from a PNG's sBIT chunk (the largest channel's), or None. Pillow does not
    expose sBIT, so the chunks before IDAT are walked here (CRC-checked; anything odd -> None)."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        if kind in (b"IDAT", b"IEND") or len(body) != length:
            return None
        if kind == b"sBIT":
            crc_ok = data[pos + 8 + length:pos + 12 + length] == struct.pack(">I", zlib.crc32(kind + body))
            return max(body) if crc_ok and 1 <= length <= 4 else None
        pos += 12 + length
    return None


def stored_format(data: bytes, im: Image.Image) -> tuple:
    """-> (bits per sample as the file stores them, or None; whether it stores grey). From a PNG's
    IHDR or a TIFF's BitsPerSample: Pillow opens 16-bit RGB, RGBA and grey+alpha PNGs as 8-bit
    modes (grey+alpha as RGBA), and this tells when it did."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 26:
        return data[24], data[25] in (0, 4)           # colour types 0 grey, 4 grey + alpha
    bits = getattr(im, "tag_v2", {}).get(258)        # TIFF BitsPerSample: an int or one per channel
    if isinstance(bits, tuple):
        bits = max(bits, default=None)
    return (bits if isinstance(bits, int) else None), False


def load_image(source, name: str = None, bit_depth: int = None) -> SourceImage:
    """source: path or bytes; bit_depth: the samples' true depth (overrides a PNG sBIT chunk).
    Raises RemacError with a one-line reason for anything unusable."""
    name = name or str(source)
    try:
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
        with warnings.catch_warnings():     # our own limit below says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        w, h = im.size
        if w > 65535 or h > 65535 or w * h > 2 ** 28:
            raise RemacError(f"{name}: image {w}x{h} exceeds REMAC's limits (sides <= 65535, <= 2^28 pixels)")
        im.load()
        return from_pil(im, name, bit_depth, png_sbit(data), stored_format(data, im))
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


def pil_metadata(im: Image.Image) -> Metadata:
    """PNG text chunks (tEXt, zTXt, iTXt), a JPEG comment, EXIF and XMP of an opened image."""
    meta = Metadata()
    for key, value in (getattr(im, "text", None) or {}).items():
        if key != "XML:com.adobe.xmp":            # XMP arrives in im.info["xmp"] as well
            meta.text[key] = str(value)
    comment = im.info.get("comment")
    if comment and "Comment" not in meta.text:
        meta.text["Comment"] = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
    exif = im.info.get("exif")
    if exif:
        meta.exif = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    xmp = im.info.get("xmp")
    if xmp:
        meta.xmp = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    return meta


def _true_depth(container: int, bit_depth, sbit, name: str, notes: list, declared_by: str = "sBIT"):
    """-> (depth, where it came from): --bit-depth, else the file's declaration `sbit` (a PNG's
    sBIT, a PDS label's bit mask; rounded up to a coded depth), else the container's."""
    if bit_depth is not None:
        if bit_depth > container:
            raise RemacError(f"{name}: --bit-depth {bit_depth} exceeds the {container}-bit samples read from it")
        return bit_depth, "--bit-depth"
    if sbit is not None:
        if not 1 <= sbit <= container:
            notes.append(f"{name}: {declared_by} {sbit} is not a depth of {container}-bit samples; ignored")
            return container, None
        depth = next(d for d in BIT_DEPTHS if d >= sbit)
        if depth != sbit and sbit > 8:
            notes.append(f"{name}: {declared_by} {sbit} is coded as {depth}-bit")
        return depth, declared_by
    return container, None


def unit_range(a: np.ndarray, peak: int) -> np.ndarray:
    """Integer samples -> float32 a / peak, with one float copy of the frame (not two)."""
    x = a.astype(np.float32)
    x /= peak
    return x


def _to_depth(a: np.ndarray, container: int, depth: int, source, name: str) -> np.ndarray:
    """Integer samples (C,H,W) -> the same at `depth` bits (0..2^depth-1). Samples above that are an
    error, except when the depth came from sBIT and the samples are scaled to the container's range
    as the PNG specification describes (v << (16-D), low bits zero or bit-replicated): shifted back."""
    peak = (1 << depth) - 1
    top = int(a.max(initial=0))
    if top > peak:
        shift = container - depth
        low = a & ((1 << shift) - 1)
        if source == "sBIT" and (not low.any() or np.array_equal(low, a >> depth)):
            a = a >> shift
        else:
            raise RemacError(f"{name}: sample value {top} exceeds the {depth}-bit maximum {peak}"
                             + (f" (depth from {source})" if source else ""))
    return a


def from_pil(im: Image.Image, name: str = "image", bit_depth: int = None, sbit: int = None,
             stored: tuple = (None, False)) -> SourceImage:
    """bit_depth: the samples' true depth (8, 10, 12, 14, 16), overriding sbit (a PNG's sBIT);
    stored: stored_format(), to say when Pillow gave fewer bits than the file holds."""
    notes = []
    meta = pil_metadata(im)
    if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":      # MPO: a camera JPEG's preview frames
        notes.append(f"{name}: {im.n_frames} frames or pages; only the first is coded")
    bits, stored_grey = stored
    narrowed = bits is not None and bits > 8                # Pillow read fewer bits than the file holds
    grey_alpha16 = stored_grey and im.mode == "RGBA"        # Pillow's RGBA for a 16-bit grey + alpha PNG
    if im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        notes.append(f"{name}: alpha channel dropped (REMAC codes no alpha)")
        im = im.convert("RGBA" if im.mode in ("RGBA", "RGBa", "P", "PA") else "LA")
        im = im.convert("L" if im.mode == "LA" or grey_alpha16 else "RGB")
    elif "transparency" in im.info:         # a colour key (tRNS) on L or RGB
        notes.append(f"{name}: transparency dropped (REMAC codes no alpha)")
    if narrowed and im.mode in ("L", "RGB"):
        notes.append(f"{name}: {bits}-bit {'grey+alpha' if grey_alpha16 else 'colour'} "
                     f"samples coded at 8 bits (their 8 high bits)")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.int32)        # I;16 and I (int32) samples; 4 bytes, not 8, per pixel
        return from_samples(a, 16, name, bit_depth, sbit, notes=notes, meta=meta)
    if im.mode == "F":
        raise RemacError(f"{name}: floating-point images are not supported (convert to 8 or 16 bit)")
    if im.mode not in ("L", "RGB"):
        im = im.convert("L" if im.mode == "1" else "RGB")
    a = np.asarray(im, dtype=np.uint8)
    sbit = min(sbit, 8) if narrowed and sbit else sbit     # its sBIT speaks of the bits Pillow dropped
    return from_samples(a, 8, name, bit_depth, sbit, notes=notes, meta=meta)


def from_samples(a: np.ndarray, container: int, name: str = "image", bit_depth: int = None, declared: int = None,
                 declared_by: str = "sBIT", notes: list = None, meta: Metadata = None) -> SourceImage:
    """(H,W) grey or (H,W,3) RGB integer samples in `container`-bit words (8 or 16) -> SourceImage.
    The depth: bit_depth (--bit-depth), else `declared` by the file (`declared_by` names it in
    messages: a PNG's sBIT, a PDS label), else the container's. RGB with equal channels is coded grey."""
    notes = [] if notes is None else notes
    meta = Metadata() if meta is None else meta
    if bit_depth is not None and bit_depth not in BIT_DEPTHS:
        raise RemacError(f"{name}: bit depth {bit_depth} is not one of {', '.join(map(str, BIT_DEPTHS))}")
    if a.dtype not in (np.uint8, np.uint16) and a.size and (a.min() < 0 or a.max() > 65535):
        raise RemacError(f"{name}: integer samples outside 0..65535 are not supported")
    depth, source = _true_depth(container, bit_depth, declared, name, notes, declared_by)
    top = int(a.max(initial=0))
    if source is None and container == 16 and 0 < top < 1 << 14:
        used = max(8, top.bit_length())
        notes.append(f"{name}: samples use {used} of 16 bits and no depth is declared; coded as 16-bit "
                     f"(pass --bit-depth {next(d for d in BIT_DEPTHS if d >= used)} if that is their depth)")
    if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
        grey = np.ascontiguousarray(a[..., 0])[None]         # not a view: the RGB array can go
        return SourceImage(_to_depth(grey, container, depth, source, name), 3, depth, notes, meta, (1 << depth) - 1)
    planes = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if planes.shape[0] == 3 and depth != 8:     # (container.Header refuses it too; this says it before any work)
        raise RemacError(f"{name}: {depth}-bit samples are defined for grey images only (colour is coded at 8 bits)")
    return SourceImage(_to_depth(planes, container, depth, source, name), planes.shape[0], depth, notes, meta,
                       (1 << depth) - 1)
