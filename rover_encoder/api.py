"""Encoding from Python, for pipelines that do not shell out; remac-encode runs these too. No torch.

    from remac import rover_encoder
    data = rover_encoder.encode_image(array, quality=60)        # (H,W) / (H,W,3) uint8, (H,W) uint16
    data = rover_encoder.encode_image(array, target_bytes=20_000)   # rate control: <= 20000 bytes
    info = rover_encoder.encode_file("navcam.png", "out/navcam.rmc", bpp=0.3)

(`rover_encoder.encode` is the module of the codec itself, so the package names the array
function encode_image; here it is `encode`.) Errors are RemacError with a one-line reason.
"""
import warnings
from functools import lru_cache

import numpy as np

from remac.bitstream import library as lib, spec
from remac.rover_encoder.cli_support import STDIO, atomic_write, input_name, output_for, read_input
from remac.bitstream.container import SIGNATURE
from remac.bitstream.errors import RemacError
from remac.bitstream.library import Library
from remac.bitstream.metadata import Metadata
from remac.rover_encoder import encode as codec, pds
from remac.rover_encoder.encode import DEFAULT_QUALITY
from remac.rover_encoder.prepared import DEFAULT_TILE
from remac.rover_encoder.imageio import SourceImage, from_pil, load_image


@lru_cache(maxsize=1)
def _default_library() -> Library:
    return lib.load()


def _library(library, use_refs: bool):
    """None: the shipped library; a Library; or a library directory."""
    if not use_refs:
        return None
    if library is None:
        return _default_library()
    return library if isinstance(library, Library) else lib.load(library)


def budget(img: SourceImage, target_bytes: int = None, bpp: float = None):
    """The whole file's byte budget for `img`, or None (no rate control): target_bytes, or
    floor(bpp * pixels / 8)."""
    if target_bytes is not None and bpp is not None:
        raise RemacError("give a target size in bytes or in bits per pixel, not both")
    if bpp is not None:
        if not bpp > 0:
            raise RemacError(f"bits per pixel {bpp} must be positive")
        return int(bpp * img.width * img.height / 8)
    if target_bytes is not None and target_bytes < 1:
        raise RemacError(f"target size {target_bytes} bytes must be positive")
    return target_bytes


def encode_source(img: SourceImage, quality=DEFAULT_QUALITY, target_bytes: int = None, bpp: float = None,
                  library=None, use_refs: bool = True, tile: int = DEFAULT_TILE, threads: int = 1,
                  precision: str = None, model=None, keep_refs: bool = False) -> codec.EncodeResult:
    """A loaded image -> EncodeResult, at `quality` or, with target_bytes / bpp, at the highest
    quality whose whole file fits (never over; within 3 % under where the quality range allows).
    model: a model directory to run instead of the shipped model; keep_refs: keep the chosen
    references even where coding without them is smaller (rover_encoder.prepared.Prepared)."""
    return codec.encode(img, quality, _library(library, use_refs), use_refs, tile, threads, precision=precision,
                        max_bytes=budget(img, target_bytes, bpp), model=model, keep_refs=keep_refs)


def to_source(image, bit_depth: int = None) -> SourceImage:
    """An array ((H,W) or (H,W,1) grey, (H,W,3) RGB; uint8, or uint16 grey), a PIL image or a
    SourceImage -> SourceImage, with imageio's decisions (RGB with equal channels coded as grey)."""
    if isinstance(image, SourceImage):
        return image
    if isinstance(image, np.ndarray):
        a = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
        if a.dtype not in (np.uint8, np.uint16) or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) \
                or (a.dtype == np.uint16 and a.ndim == 3):
            raise RemacError(f"array of {a.dtype} {a.shape}: expected (H,W) or (H,W,3) uint8, or (H,W) uint16")
        from PIL import Image
        image = Image.fromarray(np.ascontiguousarray(a))
    return from_pil(image, "image", bit_depth)


def encode(image, quality=DEFAULT_QUALITY, *, target_bytes: int = None, bpp: float = None, library=None,
           use_refs: bool = True, tile: int = DEFAULT_TILE, threads: int = 1, precision: str = None,
           bit_depth: int = None, model=None, keep_refs: bool = False) -> bytes:
    """An image (see to_source) -> .rmc bytes. library: None for the shipped one, a Library or a
    directory; use_refs=False codes without references. Warnings (alpha dropped, ...) are
    issued with warnings.warn."""
    img = to_source(image, bit_depth)
    for w in img.warnings:
        warnings.warn(w, stacklevel=2)
    return encode_source(img, quality, target_bytes, bpp, library, use_refs, tile, threads, precision, model,
                         keep_refs).data


def load_source(inp: str, bit_depth: int = None) -> SourceImage:
    """An input file ('-': stdin) -> SourceImage: a PDS3/PDS4 product (by name, .img/.lbl/.xml, or
    by an attached label; rover_encoder.pds) or an image Pillow reads."""
    if inp != STDIO and pds.is_product_input(inp):
        return pds.load_product(inp, bit_depth)
    data = read_input(inp)
    name = input_name(inp)
    if data.startswith(SIGNATURE):
        raise RemacError(f"{name}: is already a .rmc stream (use remac-decode)")
    if pds.has_attached_label(data):
        if inp == STDIO:
            raise RemacError(f"{name}: PDS products are read from files (labels name other files), not from stdin")
        return pds.load_product(inp, bit_depth)
    return load_image(data, name=name, bit_depth=bit_depth)     # the file's bytes are dropped on return


def encode_file(path, out=None, *, quality=DEFAULT_QUALITY, target_bytes: int = None, bpp: float = None,
                library=None, use_refs: bool = True, tile: int = DEFAULT_TILE, threads: int = 1,
                precision: str = None, bit_depth: int = None, strip: bool = False, model=None,
                keep_refs: bool = False, refine=()) -> dict:
    """Encode the image file `path` ('-': stdin) to `out` (default: beside it, .rmc; '-': stdout),
    written atomically. -> what remac-encode --json reports: output, bytes, bpp, quality, refs,
    width, height, ..., warnings (a list of lines). refine: .rmc files of this image already sent
    (base first, then its refinement layers in order): write the next refinement layer at
    `quality` instead of a stream of its own (rover_encoder.refine)."""
    inp = str(path)
    name = input_name(inp)
    out = output_for(inp, None, 1, ".rmc") if out is None else str(out)
    img = load_source(inp, bit_depth)
    if strip:
        img.metadata = Metadata()
    try:
        chosen = _library(library, use_refs)
        if refine:
            from remac.rover_encoder.refine import encode_refinement
            if target_bytes is not None or bpp is not None:
                raise RemacError("a refinement layer is coded at a quality (-q), not to a size")
            streams = [read_input(str(f)) for f in refine]
            result = encode_refinement(img, streams, spec.quality_steps(quality), chosen, threads, precision, model)
            chosen = None       # a layer keeps no reference of its own: nothing to say about one
        else:
            result = encode_source(img, quality, target_bytes, bpp, chosen, use_refs, tile, threads, precision, model,
                                   keep_refs)
    except RemacError as exc:
        raise RemacError(f"{name}: {exc}") from None
    atomic_write(out, result.data)
    h = result.header
    refs = {"entropy": result.entropy_ref, "decoder": result.decoder_ref}
    warnings = list(img.warnings)
    if chosen is not None and chosen.entries and result.entropy_ref is None:
        refs["note"] = "no reference kept: coding without one was smaller" + (
            f" (library {chosen.library_id} holds only {len(chosen.entries)} images)"
            if len(chosen.entries) < lib.SMALL else "")
        if chosen.path.resolve() != lib.DEFAULT.resolve():      # a library the user chose: say so
            warnings.append(f"{name}: {refs['note']}")
    info = {"output": out, "bytes": len(result.data), "bpp": round(result.bpp, 4), "width": h.width,
            "height": h.height, "channels": h.output_channels, "bit_depth": h.bit_depth,
            "quality": h.quality_value, "refs": refs,
            "entropy_ref": result.entropy_ref, "decoder_ref": result.decoder_ref, "encoder": result.precision,
            "metadata": img.metadata.describe(), "product_id": img.metadata.product_id, "warnings": warnings,
            "summary": f"{name} -> {out}: {len(result.data)} bytes, {result.bpp:.3f} bpp, quality {h.quality_value}"
                       + (f", refinement layer {h.layer} of {h.base_id.hex()}" if h.layer else "")}
    if h.layer:
        info["refines"] = {"layer": h.layer, "base_id": h.base_id.hex(), "base_quality": h.base_q100 / 100}
    limit = budget(img, target_bytes, bpp)
    if limit is not None:
        info["target_bytes"] = limit
    return info
