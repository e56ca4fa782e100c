"""Image -> .rmc bytes on the rover: prepare (grey: Prepared; colour with a 1-channel model:
PlanarPrepared) and code at a quality or within a byte budget (rover_encoder.prepared has the pipeline)."""
from remac.bitstream.errors import RemacError
from remac.rover_encoder.analysis import rover_model
from remac.rover_encoder.imageio import SourceImage
from remac.rover_encoder.planar import PlanarPrepared
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.prepared import EncodeResult, Prepared

MIN_SIDE, MAX_THIN = 16, 256   # an image with a side under MIN_SIDE px may be at most MAX_THIN px long


def check_shape(img: SourceImage) -> None:
    """Refuse a long thin image: the analysis pads each side to a multiple of 64, so a 1024x1 row is
    coded as a 1024x64 band, 64 times its pixels (20-65 bpp, and 45 s to encode a 65000x1 row). A
    side of MIN_SIDE or more pads at most 4 times; a thin image up to MAX_THIN px long costs at most
    a few kB, so icons and crops such as 1x64 are still coded."""
    h, w = img.height, img.width
    if min(h, w) < MIN_SIDE and max(h, w) > MAX_THIN:
        raise RemacError(f"a {w}x{h} image is too thin: a side under {MIN_SIDE} px is padded to 64 px, up to 64 times "
                         f"the pixels coded; REMAC codes images at least {MIN_SIDE} px on each side, or at most "
                         f"{MAX_THIN} px long")


def prepare(img: SourceImage, opts: EncodeOptions, once: bool = False):
    """The analysed image, ready to code at any quality, or with `once` at opts.q100 only (less
    memory: Prepared): a colour image with a 1-channel model (the shipped default) is coded as luma +
    chroma planes (rover_encoder.planar); anything else by one model, as is. Thin images: check_shape."""
    check_shape(img)
    if img.channels == 3 and (opts.model is None or rover_model(None, opts.model).channels == 1):
        return PlanarPrepared(img, opts, once)
    return Prepared(img, opts, once=once)


def encode(img: SourceImage, opts: EncodeOptions, keep_tiles: bool = False) -> EncodeResult:
    """Encode one image at opts.q100 or, under rate control (opts.budget), at the highest quality
    whose whole file fits (Prepared.fit; the stream is the one its header's quality gives).
    keep_tiles keeps what the coder saw per tile (for checks). img.metadata, if any, travels in a
    `meta` segment."""
    limit = opts.budget(img.width, img.height)
    prepared = prepare(img, opts, once=limit is None)       # rate control tries several qualities
    return prepared.encode(opts.q100, keep_tiles) if limit is None else prepared.fit(limit, keep_tiles)
