"""One image analysed once, ready to code at any quality, and the rate control over it.

    SourceImage --tiles--> g_a (ONNX) --> y (ungained), shallow per tile            Prepared: once
        descriptors (recycled y / first-layer stats) --> library.nearest --> entropy ref, decoder ref
    at a quality: per tile: z = h_a(y*gain) (ONNX); z_hat = round(z);               Prepared.encode
                  (mu16, idx) = intnet(z_hat, gained ref stats)
                  s = round(y*gain - mu) --> range coder (z by channel, y by scale index)
                  ... and again without the references: the smaller set of tiles is kept
    --> container.write(header, tiles)
Rate control (EncodeOptions.budget / Prepared.fit) codes the one analysis at the qualities fit_quality tries.
"""
from dataclasses import dataclass, replace

import numpy as np

from remac.bitstream import container, entropy, intnet, latent, metadata, spec
from remac.bitstream.container import Header
from remac.bitstream.errors import FormatError, RemacError
from remac.bitstream.library import nearest
from remac.rover_encoder.analysis import analyzer_for, deep_descriptor, default_precision, gain_for_quality, rover_model
from remac.rover_encoder import roi
from remac.rover_encoder.imageio import SourceImage
from remac.rover_encoder.options import TILE_CONTEXT, EncodeOptions



@dataclass
class EncodeResult:
    data: bytes
    header: Header
    entropy_ref: str = None
    decoder_ref: str = None
    tiles: list = None          # per tile (z_hat, mu16, idx, y_hat_g): what the coder saw, for checks
    precision: str = None       # the rover analysis that ran: "int8" or "float"

    @property
    def bpp(self):
        width, height = self.header.image_size      # a prior stream's canvas less its crop
        return 8 * len(self.data) / (width * height)


def context_window(header: Header, index: int, context: int):
    """-> ((top, bottom, left, right) image box to analyse for tile `index`, (dy, dx) offset of the
    tile inside it): the tile plus up to `context` pixels of the real image on every side."""
    top, left, h, w = header.tile_box(index)
    up, before = min(context, top), min(context, left)
    down, after = min(context, header.height - top - h), min(context, header.width - left - w)
    return (top - up, top + h + down, left - before, left + w + after), (up, before)


def analyse_tiles(img: SourceImage, run, header: Header, gain: np.ndarray, context: int = TILE_CONTEXT):
    """Run the analysis on every tile -> ([(y, z, shallow)] per tile, deep (2M,), shallow (2N,)).

    Each tile is analysed with `context` pixels of its neighbours around it and its own latents are
    cropped out (y at 1/16, z at 1/64: context is a multiple of 64). Without it the analysis sees
    zero padding at every tile edge, which cost ~0.7-1.2 dB at matched rate on 1-Mpixel frames cut
    into 512-px tiles. The stream is unchanged in kind: each tile's symbols are still coded (and
    decodable) on their own; only what the rover looked at to compute them is wider.

        image   +-----------+-----------+
                |   .....   |           |     tile 0 is analysed over the dotted window
                |   :t0 :...|....       |     (tile + context), then y/z are cropped to t0
                +---:---+---+---:-------+
                |   :.......|...:       |
                +-----------+-----------+

    The image descriptors are the tiles' descriptors averaged by latent area: the rover's own
    features, recycled for reference selection (no second feature extractor).
    """
    zs = []

    def analyse(x):
        y, z, shallow = run(x, gain)
        zs.append(z)
        return y, shallow
    windows, deep, shallow = analyse_windows(img, analyse, header, context)
    return [(w.y, w.crop_z(z), w.shallow) for w, z in zip(windows, zs)], deep, shallow


@dataclass
class Window:
    """One tile's analysis: the ungained latent of the window it was analysed over (tile + context)
    and where the tile's own cells lie in it; or, analysed for one quality (Prepared's `quality`),
    the tile's own cells only and its hyper-latent z at that quality."""
    y_window: np.ndarray        # (M, window h/16, window w/16)
    cells: tuple                # (row0, row1, col0, col1) of the tile in y_window, multiples of 4
    shallow: np.ndarray
    z: np.ndarray = None        # (Z, tile h/64, tile w/64) at the one quality, else None

    def settled(self, z_window: np.ndarray) -> "Window":
        """-> this tile with its hyper-latent (from the window's, z_window (Z, window h/64, w/64)) and a
        copy of its own cells of y: the window (~1.6x the tile's cells at 512-px tiles) can go."""
        y = self.y.copy()
        return Window(y, (0, y.shape[1], 0, y.shape[2]), self.shallow, self.crop_z(z_window))

    @property
    def y(self) -> np.ndarray:
        r0, r1, c0, c1 = self.cells
        return self.y_window[:, r0:r1, c0:c1]

    def crop_z(self, z_window: np.ndarray) -> np.ndarray:
        """The tile's cells of the window's hyper-latent (1/64: a quarter of y's)."""
        r0, r1, c0, c1 = (c // 4 for c in self.cells)
        return z_window[:, r0:r1, c0:c1]


def hyper_latent(analyzer, window: "Window", gain: np.ndarray) -> np.ndarray:
    """The tile's coded hyper-latent at the (M,) float gain: h_a over its window, cropped to the
    tile and rounded (round_z)."""
    return round_z(window.crop_z(analyzer.hyper(window.y_window, gain)))


def round_z(z: np.ndarray) -> np.ndarray:
    """A hyper-latent as coded: clip(floor(z + 0.5), +-Z_CLIP) (Z, ph/64, pw/64) int64."""
    return np.clip(np.floor(z.astype(np.float64) + 0.5), -spec.Z_CLIP, spec.Z_CLIP).astype(np.int64)


def analyse_windows(img: SourceImage, analyse, header: Header, context: int = TILE_CONTEXT, settle=None):
    """analyse(x) -> (y, shallow) on every tile's window (see analyse_tiles) -> ([Window] per tile,
    deep (2M,), shallow (2N,)). settle(Window) -> Window, if given, runs on each tile as soon as it is
    analysed (Prepared at one quality: Window.settled), so only what it keeps stays in memory."""
    windows = []
    for index in range(header.tile_count):
        (top, bottom, left, right), (dy, dx) = context_window(header, index, context)
        ph, pw = header.padded_tile(index)
        y, shallow = analyse(img.window(top, bottom, left, right))
        window = Window(y, (dy // 16, (dy + ph) // 16, dx // 16, (dx + pw) // 16), shallow)
        windows.append(settle(window) if settle else window)
    weights = np.array([w.y.shape[1] * w.y.shape[2] for w in windows], dtype=np.float64)
    deep = np.average([deep_descriptor(w.y) for w in windows], axis=0, weights=weights)
    shallow = np.average([w.shallow for w in windows], axis=0, weights=weights)
    return windows, deep, shallow


# The rover's symbol choice (bitstream.entropy.rdo_symbols): each non-zero symbol moves one step
# towards zero where squared error + RDO_LAMBDA * bits drops. Shipped model, real coder, 4 images
# per val set, 7 qualities: lambda 0.03 / 0.05 / 0.07 / 0.1 / 0.2 -> BD-rate val/gray
# -2.1 / -2.0 / -1.5 / -0.1 / +6.2 %, native -2.4 / -2.7 / -2.6 / -2.0 / +2.0 %, colour
# -2.0 / -2.3 / -2.1 / -1.4 / +3.4 %; weighting lambda by each channel's gain lost (+1..+4 %).
RDO_LAMBDA = 0.05


def check_tile(tile: int) -> None:
    """A tile side must be a multiple of 64 in 64..4096 (RemacError otherwise)."""
    if tile % 64 or not 64 <= tile <= 4096:
        raise RemacError(f"tile size {tile} must be a multiple of 64 in 64..4096")


class Prepared:
    """An image analysed once (g_a on every tile, references chosen), ready to be coded at any
    quality: y does not depend on the quality, only h_a, the entropy model and the coder do.

    References are kept only where they pay: at each quality the tiles are entropy-coded with the
    chosen reference and without, and the smaller whole is written (a stream without references
    names none, exactly as --no-refs writes it). A library entry that resembles the image only in
    its descriptor then costs nothing: measured with all images of each val set, always keeping
    the rover's choice cost val/gray_native 2.6 % and val/color 1.4 % against this rule. The
    second pass repeats only the integer entropy model and the range coder
    (no analysis)."""

    def __init__(self, img: SourceImage, opts: EncodeOptions, chroma: bool = False, once: bool = False,
                 qualities: list = None):
        """opts: library, keep_refs, force_refs, tile, context,
        threads, precision, model, rdo; model None: the shipped model for the image's channels;
        keep_refs is implied by force_refs; chroma: the image is a Cb or Cr plane (its own
        scale-index floors, rover_encoder.planar); once: it will be coded at opts.q100 only (not at
        any quality, as rate control needs): h_a then runs on each tile straight after g_a and only
        the tile's own latent cells are kept, not its window's (a 16-Mpixel grey frame's latents:
        ~100 -> ~64 MiB). The stream is the same. opts.roi: regions of interest, each tile coded at
        its own quality (tile_qualities); qualities: the tiles' qualities at opts.q100 instead
        (a chroma plane's, from PlanarPrepared), for `once`."""
        check_tile(opts.tile)
        if opts.context % 64 or opts.context < 0:
            raise RemacError(f"tile context {opts.context} must be a non-negative multiple of 64")
        channels = img.channels
        self.model = model = rover_model(channels, opts.model)
        self.header = Header(model.model_id, img.width, img.height, channels, img.output_channels, img.bit_depth,
                             0, opts.tile, opts.tile)
        try:
            self.header.validate()
        except FormatError as exc:
            raise RemacError(f"cannot encode this image: {str(exc).removeprefix('RHDR: ')}") from None
        self.precision = opts.precision or default_precision(model.name, model)
        self.analyzer = analyzer_for(model, opts.threads, self.precision)
        self.q100 = opts.q100 if once else None
        self.regions = opts.roi
        if opts.roi:
            roi.check_inside(opts.roi, img.width, img.height)
        settle = None
        if once:
            self.once_qualities = qualities or self.tile_qualities(opts.q100)
            gains = {q: gain_for_quality(model, q) for q in set(self.once_qualities)}
            at = iter(self.once_qualities)
            settle = lambda w: w.settled(self.analyzer.hyper(w.y_window, gains[next(at)]))
        self.windows, deep, shallow = analyse_windows(img, self.analyzer.analyse, self.header, opts.context, settle)
        self.stats, self.eref, self.dref = None, None, None
        self.plain_header = replace(self.header)        # the header of the stream without references
        self.keep_refs = opts.keep_refs or opts.force_refs is not None
        self.chroma = chroma
        self.rdo = RDO_LAMBDA if opts.rdo is None else opts.rdo
        library = opts.library
        candidates = library.ids_for(model.name) if library is not None else []
        if candidates:
            library.check_model(model.name, model.model_id, model.m)
            self.eref, self.dref = opts.force_refs or (nearest(deep, {i: library.deep[i] for i in candidates}),
                                                  nearest(shallow, {i: library.shallow[i] for i in candidates}))
            self.stats = library.stats16(self.eref)
            self.header.library_id = library.id_bytes
            self.header.entropy_ref_id, self.header.decoder_ref_id = bytes.fromhex(self.eref), bytes.fromhex(self.dref)
            self.header.flags = 1
        self.meta = metadata.pack(img.metadata)

    def tile_qualities(self, q100: int) -> list:
        """Every tile's quality (hundredths) in a stream at q100: q100, or higher where a region of
        interest meets the tile (rover_encoder.roi)."""
        if not self.regions:
            return [q100] * self.header.tile_count
        return roi.tile_qualities(self.header, self.regions, q100)

    def encode(self, q100: int, keep_tiles: bool = False) -> EncodeResult:
        """Code at quality q100 (hundredths, 0..10000): h_a, integer entropy model, range coder;
        regions of interest at theirs (the header's quality map)."""
        qualities = self.tile_qualities(q100)
        header, words, coded = self.code(q100, keep_tiles, qualities)
        header.roi_levels, header.roi_map = roi.quality_map(q100, qualities)
        eref, dref = referenced(header)
        return EncodeResult(container.write(header, words, self.meta), header, eref, dref,
                            coded if keep_tiles else None, self.precision)

    def code(self, q100: int, keep_tiles: bool = False, qualities: list = None):
        """-> (header at quality q100 (hundredths), {tile index: range-coder words}, [(z_hat, mu16, idx, y_hat_g)]
        per tile if keep_tiles): what encode writes, for callers that assemble streams of planes.
        The header names the references only when they were kept (see the class doc). qualities:
        each tile's quality (regions of interest; default q100 for all); the header carries no
        quality map (the caller adds it)."""
        qualities = qualities or [q100] * len(self.windows)
        if self.q100 is not None and (self.q100 != q100 or qualities != self.once_qualities):
            raise RemacError(f"image analysed for quality {self.q100 / spec.QUALITY_STEPS} only, "
                             f"not {q100 / spec.QUALITY_STEPS}")
        model = self.model
        n_passes = 2 if self.stats is not None and not self.keep_refs else 1
        params = {}

        def at(q):
            """Everything the coder needs at quality q (hundredths), shared by the tiles at q."""
            if q not in params:
                gain_int = spec.gain_int_at(model.gain_int, q)
                refs = [spec.ref_input(self.stats, gain_int), spec.ref_input(None, gain_int)][:n_passes]
                params[q] = (gain_for_quality(model, q), model.floors_at(q, self.chroma), refs, model.spatial_at(q))
            return params[q]
        passes = [({}, []) for _ in range(n_passes)]    # per reference input: words, coded tiles
        for index, window in enumerate(self.windows):
            gain, floors, ref_inputs, spatial = at(qualities[index])
            z_hat = round_z(window.z) if self.q100 is not None else hyper_latent(self.analyzer, window, gain)
            hidden = intnet.trunk(model.net, z_hat)     # shared by both passes: it does not read r
            for r, (words, coded) in zip(ref_inputs, passes):
                words[index], mu16, idx, symbols = latent.encode(model.net, z_hat, r, window.y * gain[:, None, None],
                                                                 model.z_tables, model.y_tables, floors, self.rdo,
                                                                 spatial, hidden)
                if keep_tiles:
                    coded.append((z_hat, mu16, idx, entropy.dequantize(symbols, mu16)))
        headers = [replace(h, quality=q100 // spec.QUALITY_STEPS, quality_frac=q100 % spec.QUALITY_STEPS, version=None)
                   for h in (self.header, self.plain_header)[:len(passes)]]
        # bytes that differ between the two: the words, and the 4.0 header's reference fields (24 bytes)
        size = lambda k: 4 * sum(w.size for w in passes[k][0].values()) + len(headers[k].pack())
        kept = min(range(len(passes)), key=lambda k: (size(k), k))     # ties keep the references
        return (headers[kept], *passes[kept])

    def fit(self, budget: int, keep_tiles: bool = False) -> EncodeResult:
        """The stream at the highest quality whose whole file is at most `budget` bytes (fit_quality)."""
        return fit_quality(lambda q100: self.encode(q100, keep_tiles), budget)


def referenced(header: Header) -> tuple:
    """-> (entropy reference ID, decoder reference ID) hex a stream's header names, (None, None) if none."""
    if header.library_id == container.ZERO_ID:
        return None, None
    return header.entropy_ref_id.hex(), header.decoder_ref_id.hex()


RATE_TOLERANCE = 0.03       # rate control stops once a stream is within 3 % under the budget
RATE_AIM = 0.985            # ... aiming each guess at the middle of that window
RATE_INTERPOLATED = 8       # guesses interpolated before falling back to plain bisection


def fit_quality(encode_at, budget: int) -> EncodeResult:
    """encode_at(q100) -> EncodeResult (q100: quality in hundredths); -> the result with the largest q100 found
    whose whole file is at most `budget` bytes: never over, and within RATE_TOLERANCE under wherever
    two neighbouring hundredths do not straddle a wider gap. Raises RemacError when even quality 0
    is larger than the budget.

    Quality 0 and 100 bracket the budget; each guess is interpolated on log(size) (regula falsi with
    the Illinois weighting: an end kept twice has its weight halved, so the bracket closes from both
    sides), bisection after RATE_INTERPOLATED guesses. Typically 2-4 guesses after the two ends."""
    smallest = encode_at(0)
    size = len(smallest.data)
    if size > budget:
        raise RemacError(f"budget of {budget} bytes is below the smallest stream for this image "
                         f"({size} bytes at quality 0)")
    if size >= (1 - RATE_TOLERANCE) * budget:
        return smallest
    largest = encode_at(100 * spec.QUALITY_STEPS)
    if len(largest.data) <= budget:
        return largest
    aim = np.log(RATE_AIM * budget)
    lo, hi = 0, 100 * spec.QUALITY_STEPS
    g_lo, g_hi = np.log(size) - aim, np.log(len(largest.data)) - aim       # < 0 < (sizes in hand)
    best, kept, guesses = smallest, None, 0
    while hi - lo > 1:
        guesses += 1
        guess = lo - g_lo * (hi - lo) / (g_hi - g_lo) if guesses <= RATE_INTERPOLATED else (lo + hi) / 2
        q = min(max(int(round(guess)), lo + 1), hi - 1)
        result = encode_at(q)
        size = len(result.data)
        if size > budget:
            hi, g_hi = q, np.log(size) - aim
            g_lo, kept = (g_lo / 2 if kept == "lo" else g_lo), "lo"
            continue
        if size > len(best.data):
            best = result
        if size >= (1 - RATE_TOLERANCE) * budget:
            break
        lo, g_lo = q, np.log(size) - aim
        g_hi, kept = (g_hi / 2 if kept == "hi" else g_hi), "hi"
    return best
