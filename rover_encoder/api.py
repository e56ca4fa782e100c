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
from remac.rover_encoder.roi import regions, summary as roi_summary
from remac.rover_encoder.options import COLOUR_TRANSFORMS, DEFAULT_QUALITY, DEFAULT_TILE, EncodeOptions
from remac.rover_encoder.imageio import SourceImage, from_pil, load_image


@lru_cache(maxsize=1)
def _default_library() -> Library:
    return lib.load()


def options(quality=DEFAULT_QUALITY, *, target_bytes: int = None, bpp: float = None, library=None,
            use_refs: bool = True, tile: int = DEFAULT_TILE, threads: int = 1, precision: str = None,
            bit_depth: int = None, model=None, keep_refs: bool = False, strip: bool = False,
            refine=(), roi=(), colour: str = "adaptive", prior=()) -> EncodeOptions:
    """encode_image's and encode_file's keywords -> EncodeOptions: quality 0..100 (fractional: rounded
    to hundredths); library None: the shipped one, a Library or a directory; use_refs=False: none;
    roi: regions of interest, 'x,y,w,h[:q]' strings or (x, y, w, h[, quality]) tuples (rover_encoder.roi);
    colour: a colour image's transform, "adaptive" (the image's own) or "bt601"; prior: an earlier
    stream of the same pointing (path or bytes), then any it was itself coded given (rover_encoder.prior)."""
    if not 0 <= quality <= 100:
        raise RemacError(f"quality {quality} is out of range 0..100")
    if not use_refs:
        library = None
    elif library is None:
        library = _default_library()
    elif not isinstance(library, Library):
        library = lib.load(library)
    return EncodeOptions(spec.quality_steps(quality), target_bytes, bpp, library, keep_refs, tile=tile,
                         threads=threads, precision=precision, model=model, bit_depth=bit_depth, strip=strip,
                         refine=tuple(refine), roi=regions(roi), colour_transform=colour_transform(colour),
                         prior=tuple(prior))


def colour_transform(name: str):
    """colour= -> EncodeOptions.colour_transform (options.COLOUR_TRANSFORMS)."""
    if name not in COLOUR_TRANSFORMS:
        raise RemacError(f"colour transform {name!r}: expected one of {', '.join(COLOUR_TRANSFORMS)}")
    return COLOUR_TRANSFORMS[name]


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


def encode(image, quality=DEFAULT_QUALITY, **settings) -> bytes:
    """An image (see to_source) -> .rmc bytes at `quality` or, with target_bytes / bpp, at the
    highest quality whose whole file fits (never over; within 3 % under where the quality range
    allows). settings: options()'s keywords. Warnings (alpha dropped, ...) are issued with
    warnings.warn."""
    opts = options(quality, **settings)
    img = to_source(image, opts.bit_depth)
    for w in img.warnings:
        warnings.warn(w, stacklevel=2)
    return _encode(img, opts).data


def _encode(img: SourceImage, opts: EncodeOptions):
    """A stream of its own, or given opts.prior (rover_encoder.prior)."""
    if opts.store:
        from remac.rover_encoder.scenes import STORE_BYTES, encode_with_store
        return encode_with_store(img, opts, opts.store, opts.store_bytes or STORE_BYTES)
    if not opts.prior:
        return codec.encode(img, opts)
    from remac.rover_encoder.prior import encode_with_prior
    streams = [p if isinstance(p, (bytes, bytearray)) else read_input(str(p)) for p in opts.prior]
    return encode_with_prior(img, streams, opts)


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


def encode_file(path, out=None, opts: EncodeOptions = None, **settings) -> dict:
    """Encode the image file `path` ('-': stdin) to `out` (default: beside it, .rmc; '-': stdout),
    written atomically, with `opts` or else options(**settings) (remac-encode builds opts once for
    all its inputs). -> what remac-encode --json reports: output, bytes, bpp, quality, refs, width,
    height, ..., warnings (a list of lines). opts.refine: .rmc files of this image already sent
    (base first, then its refinement layers in order): write the next refinement layer at opts.q100
    instead of a stream of its own (rover_encoder.refine)."""
    opts = options(**settings) if opts is None else opts
    inp = str(path)
    name = input_name(inp)
    out = output_for(inp, None, 1, ".rmc") if out is None else str(out)
    img = load_source(inp, opts.bit_depth)
    if opts.strip:
        img.metadata = Metadata()
    chosen = opts.library
    try:
        if opts.refine:
            from remac.rover_encoder.refine import encode_refinement
            result = encode_refinement(img, [read_input(str(f)) for f in opts.refine], opts)
            chosen = None       # a layer keeps no reference of its own: nothing to say about one
        else:
            result = _encode(img, opts)
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
    width, height = h.image_size
    info = {"output": out, "bytes": len(result.data), "bpp": round(result.bpp, 4), "width": width,
            "height": height, "channels": h.output_channels, "bit_depth": h.bit_depth,
            "quality": h.quality_value, "refs": refs,
            "entropy_ref": result.entropy_ref, "decoder_ref": result.decoder_ref, "encoder": result.precision,
            "metadata": img.metadata.describe(), "product_id": img.metadata.product_id, "warnings": warnings,
            "summary": f"{name} -> {out}: {len(result.data)} bytes, {result.bpp:.3f} bpp, quality {h.quality_value}"
                       + (f", refinement layer {h.layer} of {h.base_id.hex()}" if h.layer else "")}
    if h.roi_levels:
        info["roi"] = roi_summary(h)
        info["summary"] += f", regions of interest at quality {', '.join(f'{q / 100:g}' for q, _ in h.roi_levels)}"
    if h.has_prior:
        info["prior"] = {"id": h.prior_id.hex(), "shift_px": [16 * s + c for s, c in zip(h.prior_shift, h.prior_crop)],
                         "tiles_predicted": sum(1 for t in h.prior_tiles if t)}
        info["summary"] += f", given prior {h.prior_id.hex()}"
    if h.layer:
        info["refines"] = {"layer": h.layer, "base_id": h.base_id.hex(), "base_quality": h.base_q100 / 100}
    limit = opts.budget(img.width, img.height)
    if limit is not None:
        info["target_bytes"] = limit
    return info
