"""How to encode: one value, built once (remac-encode from its options, rover_encoder.api from its
keywords) and passed down the encode path (api -> encode -> Prepared / PlanarPrepared / refine)."""
from dataclasses import dataclass

from remac.bitstream import colour, spec
from remac.bitstream.errors import RemacError
from remac.bitstream.library import Library
from remac.rover_encoder import roi

DEFAULT_QUALITY = 75
DEFAULT_TILE = 512
COLOUR_TRANSFORMS = {"adaptive": None, "bt601": b""}     # --colour-transform / colour= -> colour_transform
TILE_CONTEXT = 64       # neighbouring pixels each tile's analysis sees (prepared.analyse_tiles)


@dataclass(frozen=True)
class EncodeOptions:
    """q100: quality in hundredths, 0..10000 (quality 37.25 -> 3725), unused under rate control;
    target_bytes / bpp: rate control, the whole file at most this many bytes / bits per pixel
    (see budget); library: the reference library, None: code without references; keep_refs: keep
    the chosen references even where coding without them is smaller; force_refs:
    (entropy_ref_id, decoder_ref_id) instead of the selection (experiments, kept always); tile:
    tile side in px; context: px of neighbouring tiles each tile's analysis sees (0: alone);
    threads: onnxruntime's and BLAS's; precision: rover analysis "int8" or "float" (None: the
    model's default); model: a model directory instead of the shipped model; rdo: the symbol
    choice's rate weight (None: prepared.RDO_LAMBDA). Files only (api.encode_file): bit_depth:
    true sample depth (None: the file's); strip: drop metadata; refine: paths of the streams of
    this image already sent (base first): write the next refinement layer at q100; roi: regions of
    interest (rover_encoder.roi.Region, ...), coded at a higher quality, tile by tile;
    colour_transform: a colour image's planes (bitstream.colour): None fits the image's own, b""
    is BT.601, 5 bytes are that transform (a refinement layer takes its base's); prior: an earlier
    stream of this pointing (a path or bytes) to code the frame given, then any it was itself coded
    given (rover_encoder.prior; the stream is never larger than without it); store: a scene store
    directory (rover_encoder.scenes: frames, grey or colour, that repeat a stored pointing are coded given it),
    store_bytes its bound (None: scenes.STORE_BYTES)."""
    q100: int = DEFAULT_QUALITY * spec.QUALITY_STEPS
    target_bytes: int = None
    bpp: float = None
    library: Library = None
    keep_refs: bool = False
    force_refs: tuple = None
    tile: int = DEFAULT_TILE
    context: int = TILE_CONTEXT
    threads: int = 1
    precision: str = None
    model: str = None
    rdo: float = None
    bit_depth: int = None
    strip: bool = False
    refine: tuple = ()
    roi: tuple = ()
    colour_transform: bytes = None
    prior: tuple = ()
    store: str = None
    store_bytes: int = None

    def __post_init__(self):
        if not 0 <= self.q100 <= 100 * spec.QUALITY_STEPS:
            raise RemacError(f"quality {self.q100 / spec.QUALITY_STEPS} is out of range 0..100")
        if self.target_bytes is not None and self.bpp is not None:
            raise RemacError("give a target size in bytes or in bits per pixel, not both")
        if self.bpp is not None and not self.bpp > 0:
            raise RemacError(f"bits per pixel {self.bpp} must be positive")
        if self.target_bytes is not None and self.target_bytes < 1:
            raise RemacError(f"target size {self.target_bytes} bytes must be positive")
        if self.refine and (self.target_bytes is not None or self.bpp is not None):
            raise RemacError("a refinement layer is coded at a quality (-q), not to a size")
        if self.colour_transform:
            colour.transform_matrix(self.colour_transform)      # ValueError names a bad code
        if self.store and (self.prior or self.refine):
            raise RemacError("a scene store (--store) picks the prior itself: not with --prior or --refine")
        if self.prior and (self.refine or self.roi or self.target_bytes is not None or self.bpp is not None):
            raise RemacError("a frame coded given a prior (--prior) is coded at a quality (-q), alone (no --refine, "
                             "--roi, --target-bytes or --bpp)")
        if self.roi:
            if self.refine:
                raise RemacError("regions of interest (--roi) cannot be coded in a refinement layer")
            roi.check(self.roi, None if self.target_bytes is not None or self.bpp is not None else self.q100)

    def budget(self, width: int, height: int):
        """The whole file's byte budget for a width x height image, or None (no rate control):
        target_bytes, or floor(bpp * pixels / 8)."""
        return int(self.bpp * width * height / 8) if self.bpp is not None else self.target_bytes
