"""Image -> .rmc bytes on the rover: prepare (grey: Prepared; colour with a 1-channel model:
PlanarPrepared) and code at a quality or within a byte budget (rover_encoder.prepared has the pipeline)."""
from remac.bitstream import spec
from remac.bitstream.errors import RemacError
from remac.bitstream.library import Library
from remac.rover_encoder.analysis import rover_model
from remac.rover_encoder.imageio import SourceImage
from remac.rover_encoder.planar import PlanarPrepared
from remac.rover_encoder.prepared import DEFAULT_TILE, TILE_CONTEXT, EncodeResult, Prepared

DEFAULT_QUALITY = 75
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


def prepare(img: SourceImage, library: Library = None, use_refs: bool = True, tile: int = DEFAULT_TILE,
            threads: int = 1, force_refs: tuple = None, precision: str = None, context: int = TILE_CONTEXT,
            model=None, keep_refs: bool = False, rdo: float = None, q100: int = None):
    """The analysed image, ready to code at any quality, or at q100 (hundredths) only (less memory; arguments
    as Prepared's): a colour image with a 1-channel model (the shipped default) is coded as luma +
    chroma planes (rover_encoder.planar); anything else by one model, as is. Thin images: check_shape."""
    check_shape(img)
    if img.channels == 3 and (model is None or rover_model(None, model).channels == 1):
        return PlanarPrepared(img, library, use_refs, tile, threads, force_refs, precision, context, model,
                              keep_refs=keep_refs, rdo=rdo, q100=q100)
    return Prepared(img, library, use_refs, tile, threads, force_refs, precision, context, model, keep_refs, rdo=rdo,
                    q100=q100)


def encode(img: SourceImage, quality: int = DEFAULT_QUALITY, library: Library = None, use_refs: bool = True,
           tile: int = DEFAULT_TILE, threads: int = 1, force_refs: tuple = None,
           keep_tiles: bool = False, precision: str = None, context: int = TILE_CONTEXT,
           max_bytes: int = None, model=None, keep_refs: bool = False) -> EncodeResult:
    """Encode one image. force_refs=(entropy_ref_id, decoder_ref_id) overrides the selection
    (reference experiments only); keep_tiles keeps what the coder saw per tile (for checks);
    precision: rover analysis "int8" or "float" (None: the model's default); context: pixels of
    neighbouring tiles each tile's analysis sees (0: tiles analysed alone). quality may be
    fractional: it is coded in hundredths (rounded to the nearest), the integer gains interpolated
    exactly (spec.gain_int_at). img.metadata, if any, travels in a `meta` segment.
    max_bytes: rate control instead of `quality`: the highest quality whose whole file fits
    (Prepared.fit); the stream is the one `quality` = its header's quality would give.
    model: a model directory to run instead of the shipped model (remac-encode --model).
    keep_refs: keep the chosen references even where coding without them is smaller (experiments)."""
    if max_bytes is None and not 0 <= quality <= 100:
        raise RemacError(f"quality {quality} is out of range 0..100")
    q100 = None if max_bytes is not None else spec.quality_steps(quality)   # rate control tries several
    prepared = prepare(img, library, use_refs, tile, threads, force_refs, precision, context, model, keep_refs,
                       q100=q100)
    return prepared.encode(q100, keep_tiles) if max_bytes is None else prepared.fit(max_bytes, keep_tiles)
