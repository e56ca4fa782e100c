"""Writing decoded images: the format from the output name, lossy formats only on request, the
true bit depth (PNG sBIT) and the stream's metadata restored."""
import io

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from remac.rover_encoder.cli_support import STDIO
from remac.bitstream.errors import RemacError
from remac.bitstream.metadata import Metadata

# formats that would add a second, lossy compression; saved (with --force) at these settings
LOSSY = {"JPEG": {"quality": 95, "subsampling": 0}, "MPO": {"quality": 95, "subsampling": 0},
         "WEBP": {"quality": 95}, "AVIF": {"quality": 95}, "HEIF": {"quality": 95}}

# zlib level of PNG outputs: on Mars frames level 3 files are 0-6 % smaller than Pillow's default
# 6 and written ~3x faster (0.43 -> ~0.15 s for an RGB megapixel); the pixels are the same
PNG_LEVEL = 3


def format_for(path: str) -> str:
    """Pillow format for an output path: by extension; PNG for stdout and unknown extensions. (.png
    and stdout are answered without Image.registered_extensions(), which imports every Pillow
    plugin: ~40 ms of each remac-decode.)"""
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else "png"
    if path == STDIO or ext == "png":
        return "PNG"
    return Image.registered_extensions().get("." + ext) or "PNG"


def check_lossless(path: str, force: bool):
    """-> a warning to print when `path` is a lossy format and force is set; raises RemacError
    (one line) when it is lossy and force is not."""
    fmt = format_for(path)
    if fmt not in LOSSY:
        return None
    settings = ", ".join(f"{k} {v}" for k, v in LOSSY[fmt].items())
    if not force:
        raise RemacError(f"{path}: {fmt} is lossy and would degrade the decoded image again; "
                         "write .png (or .tif), or use --force")
    return f"{path}: writing lossy {fmt} ({settings}) as --force asks"


GREY_ONLY = (".pgm", ".pbm")      # Pillow would write a colour image into them as P6 all the same


def check_channels(path: str, channels: int):
    """Raise RemacError (one line) when an image of `channels` cannot be written to `path`: a colour
    image to a grey-only format. Checked from the stream's header before decoding, and again on write."""
    if channels == 3 and path.lower().endswith(GREY_ONLY):
        raise RemacError(f"{path}: a {path.rsplit('.', 1)[-1].upper()} file holds grey images and this one "
                         f"is colour; write .ppm or .png")


def image_bytes(image, path: str, bit_depth: int = 8, meta: Metadata = None) -> bytes:
    """(H,W) / (H,W,3) uint8 or uint16 samples -> the bytes of the file `path` (format_for(path);
    '-': PNG). A PNG of a 10..14-bit image holds the samples 0..2^D-1 as they are, with an sBIT
    chunk naming D; PNG gets text chunks, EXIF and XMP, JPEG and WebP EXIF and XMP."""
    fmt = format_for(path)
    check_channels(path, 3 if image.ndim == 3 else 1)
    meta = meta or Metadata()
    kwargs = dict(LOSSY.get(fmt, {}))
    if fmt == "PNG":
        info = PngInfo()
        if bit_depth not in (8, 16):
            info.add(b"sBIT", bytes([bit_depth] * (3 if image.ndim == 3 else 1)))
        for key, value in meta.text.items():
            info.add_text(key, value)
        if meta.xmp:
            info.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"))
        kwargs["pnginfo"] = info
        kwargs["compress_level"] = PNG_LEVEL
    elif fmt in LOSSY and meta.xmp:
        kwargs["xmp"] = meta.xmp
    if meta.exif and fmt in ("PNG", *LOSSY):
        kwargs["exif"] = b"Exif\x00\x00" + meta.exif
    buf = io.BytesIO()
    try:
        Image.fromarray(image).save(buf, format=fmt, **kwargs)      # uint8 -> L / RGB, uint16 (H,W) -> I;16
    except (KeyError, OSError, ValueError, TypeError) as exc:
        raise RemacError(f"{path}: cannot write a {image.dtype} image as {fmt} ({exc})") from None
    return buf.getvalue()
