"""A re-imaged scene on the rover: code a frame given an earlier stream of the same pointing (its
prior; bitstream.prior, docs/FORMAT.md "Re-imaged scenes").

    prior .rmc --bitstream.layers.prior_latents (integer entropy path, no torch)--> P (M, H, W)
    repeat test + shift: the frame's 16x16 block means at every pixel offset against the prior's
        channel 0 (its block means), normalised correlation over the overlap      (estimate_shift)
    canvas: the frame with crop = shift mod 16 rows / columns prepended (edge), so that its blocks
        fall on the prior's; shift div 16 = the header's whole-cell shift
    analysis of the canvas (Prepared, no references); gain and brightness offset of the prediction
        by least squares (fit_gain); per tile the scale-index step with the fewest bytes, or none
    --> the smaller of that stream and the frame coded on its own (never larger than without prior)

The rover keeps nothing but the streams it sent; rover_encoder.scenes keeps a few of them for this.
"""
from dataclasses import dataclass, replace

import numpy as np

from remac.bitstream import colour, container, entropy, intnet, latent, layers, prior, refine, spec
from remac.bitstream.errors import RemacError
from remac.rover_encoder import encode as codec
from remac.rover_encoder.analysis import gain_for_quality, rover_model
from remac.rover_encoder.imageio import SourceImage
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.planar import CHROMA_SHIFT, chroma_quality
from remac.rover_encoder.prepared import RDO_LAMBDA, EncodeResult, round_z

MAX_SHIFT = 32          # px searched each way by estimate_shift
MIN_OVERLAP = 0.25      # of the frame's blocks that must meet the prior's for a shift to count
REPEAT = 0.97           # detail correlation above which a frame repeats a pointing (Match.repeats): synthetic
                        # re-imaged val frames 0.977 .. 0.999, sites/val neighbours (none a repeat) at most 0.955
FIRST_STEP = 16        # the step search starts here (then at the tile before's best), moving by SEARCH
SEARCH = (4, 2)         # adding 1: ~2 more codings per tile; bytes within +-4 % either way on 3 frames x 3 qualities


@dataclass
class Match:
    shift: tuple        # (sy, sx) px: frame pixel p shows what prior canvas pixel p + shift shows
    score: float        # normalised correlation of the block means over the overlap (-1 .. 1)
    overlap: float      # share of the frame's blocks inside the prior
    detail: float = -1.0    # the same of their differences to the next block across and down (the
                            # detail; smooth unrelated terrain correlates in the means only)

    @property
    def repeats(self) -> bool:
        return self.detail >= REPEAT and self.overlap >= MIN_OVERLAP


def block_sums(pixels: np.ndarray) -> np.ndarray:
    """(H, W) -> integral image (H+1, W+1) float64."""
    s = np.zeros((pixels.shape[0] + 1, pixels.shape[1] + 1))
    s[1:, 1:] = pixels.astype(np.float64).cumsum(0).cumsum(1)
    return s


def estimate_shift(pixels: np.ndarray, means: np.ndarray, max_shift: int = MAX_SHIFT) -> Match:
    """pixels (H, W): the frame (any scale); means (h, w): the prior canvas's block means (its
    latent channel 0, any affine scale) -> the Match with the highest correlation over shifts of
    -max_shift .. max_shift px each way. For each crop (cy, cx) in 0..15 the frame's whole 16x16 blocks
    starting at rows 16 i - cy are compared with the prior's blocks i + dy."""
    integral = block_sums(pixels)
    height, width = pixels.shape
    best = Match((0, 0), -2.0, 0.0)
    cells = max(1, (height // 16) * (width // 16))
    for cy in range(16):
        rows = np.arange(1 if cy else 0, (height + cy) // 16)       # whole blocks: 16 i - cy >= 0, <= height - 16
        for cx in range(16):
            cols = np.arange(1 if cx else 0, (width + cx) // 16)
            a, b = 16 * rows[:, None] - cy, 16 * cols[None, :] - cx
            sums = integral[a + 16, b + 16] - integral[a, b + 16] - integral[a + 16, b] + integral[a, b]
            for sy, okr, pr in _offsets(rows, cy, means.shape[0], max_shift):
                for sx, okc, pc in _offsets(cols, cx, means.shape[1], max_shift):
                    n = okr.sum() * okc.sum()
                    if n < max(16, MIN_OVERLAP * cells):
                        continue
                    u = sums[okr][:, okc]
                    v = means[pr[okr]][:, pc[okc]].astype(np.float64)
                    score = _correlation(u, v)
                    if score > best.score:
                        best = Match((sy, sx), score, n / cells,
                                     _correlation(*(np.concatenate([np.diff(a, axis=0).ravel(), np.diff(a, axis=1).ravel()])
                                                    for a in (u, v))))
    return best


def _offsets(blocks: np.ndarray, crop: int, prior_blocks: int, max_shift: int):
    """Along one axis: the frame's blocks `blocks` at crop `crop` -> [(shift px, inside (n,) bool, the
    prior's block of each)] for the whole-block shifts d with |16 d + crop| <= max_shift."""
    out = []
    for d in range(-(max_shift // 16) - 1, max_shift // 16 + 1):
        if abs(16 * d + crop) <= max_shift:
            p = blocks + d
            out.append((16 * d + crop, (p >= 0) & (p < prior_blocks), p))
    return out


def _correlation(u: np.ndarray, v: np.ndarray) -> float:
    u, v = u.ravel() - u.mean(), v.ravel() - v.mean()
    den = np.sqrt((u @ u) * (v @ v))
    return float(u @ v / den) if den > 0 else -1.0


def canvas_of(img: SourceImage, crop: tuple) -> SourceImage:
    """The frame with crop = (rows, columns) prepended by edge replication (what a prior stream codes)."""
    if crop == (0, 0):
        return img
    samples = np.pad(img.samples, ((0, 0), (crop[0], 0), (crop[1], 0)), mode="edge")
    return replace(img, samples=samples, warnings=list(img.warnings))


def fit_pairs(pairs) -> tuple:
    """pairs: [(y16 (M, n) float gained latent * 16, p16 (M, n) int prediction at gain 1)] over the
    cells the prior covers -> (gain in 1/1024, offset16 of channel 0): least squares, channels 1.. for
    the gain (texture scales with brightness), then channel 0's mean residual for the offset."""
    num = sum(float((y[1:] * p[1:]).sum()) for y, p in pairs)
    den = sum(float((p[1:].astype(np.float64) ** 2).sum()) for _, p in pairs)
    gain = int(np.clip(round(container.PRIOR_GAIN_ONE * num / den), 1, 65535)) if den > 0 else container.PRIOR_GAIN_ONE
    n = sum(y.shape[1] for y, _ in pairs)
    resid = sum(float((y[0] - p[0] * gain / container.PRIOR_GAIN_ONE).sum()) for y, p in pairs)
    return gain, int(np.clip(round(resid / max(n, 1)), -32768, 32767))


def search_step(code, tried: dict, start: int) -> int:
    """Local search of a tile's scale-index step: tried[step] = code(step) -> (.., cost); from
    `start`, move by 4 while a neighbour costs less, then by 2, then by 1 (the cost is close to
    convex in the step). -> the best step (typically 6-8 codings)."""
    cost = lambda s: tried[s][1]
    best = start
    if best not in tried:
        tried[best] = code(best)
    for delta in SEARCH:
        while True:
            near = [s for s in (best - delta, best + delta) if 0 <= s <= container.MAX_PRIOR_STEP]
            for s in near:
                if s not in tried:
                    tried[s] = code(s)
            step = min(near, key=cost)
            if cost(step) >= cost(best):
                break
            best = step
    return best


def prior_streams(streams: list, model, library=None):
    """streams: the prior (bytes) first, then any streams it was itself coded given -> (its
    header, [prior.LatentMap] of its planes, its stream ID). The rover coded them itself: damage is
    refused."""
    if not streams:
        raise RemacError("coding given a prior needs the prior stream")
    ref = None
    if library is not None:
        ref = lambda h: spec.ref_input(library.stats16(h.entropy_ref_id.hex()), spec.gain_int_at(model.gain_int, h.q100))
    pool = prior.Pool(streams[1:], ref)
    header, latents = layers.prior_latents(streams[0], model, pool)
    if any(m.lost.any() for m in latents):
        raise RemacError(f"prior stream {refine.stream_id(streams[0]).hex()} is damaged")
    return header, latents, refine.stream_id(streams[0])


def luma_of(img: SourceImage, transform: bytes) -> np.ndarray:
    """(H, W) float: a grey frame's samples, or a colour frame's luma plane under `transform`."""
    if img.channels == 1:
        return img.samples[0].astype(np.float64)
    return colour.to_planes(img.pixels, CHROMA_SHIFT, transform)[0].astype(np.float64)


def encode_with_prior(img: SourceImage, streams: list, opts: EncodeOptions, match: Match = None,
                      latents=None, keep_tiles: bool = False) -> EncodeResult:
    """Code the frame `img` at opts.q100 given the prior streams[0] (bytes; streams[1:]: any it
    was itself coded given). -> the EncodeResult of the smaller of: the frame coded given its prior
    (header flags bit 5), or coded on its own (codec.encode: a stream without a prior). A colour
    frame (luma + chroma planes) needs a colour prior and is coded with the prior's colour transform,
    each plane given the prior's. match: the shift already estimated (rover_encoder.scenes), else
    estimate_shift here; latents: the prior's (header, [LatentMap], ID) already decoded; keep_tiles:
    the result keeps what the coder saw per tile (a prior stream's always does)."""
    if opts.target_bytes is not None or opts.bpp is not None:
        raise RemacError("a frame is coded given a prior at a quality (-q), not to a size")
    if opts.roi:
        raise RemacError("regions of interest (--roi) cannot be coded given a prior")
    plain = codec.encode(img, opts, keep_tiles)
    model = rover_model(1, opts.model)
    if plain.header.coded_channels != 1 and not plain.header.planes:
        return plain        # a colour model's stream: not predicted (the grey model codes colour as planes)
    p_header, prior_latents, prior_id = latents or prior_streams(streams, model, opts.library)
    if p_header.planes != plain.header.planes or (p_header.planes and p_header.chroma_shift != CHROMA_SHIFT):
        return plain        # grey given colour or colour given grey: nothing to predict plane by plane
    if match is None:
        match = estimate_shift(luma_of(img, p_header.colour_transform), prior_latents[0].p16[0])
    if match.score <= 0:
        return plain
    cell = 16 << (CHROMA_SHIFT if p_header.planes else 0)       # planes: whole chroma cells (32 px)
    (dy, cy), (dx, cx) = divmod(match.shift[0], cell), divmod(match.shift[1], cell)
    prep = codec.prepare(canvas_of(img, (cy, cx)), replace(opts, library=None, roi=(),
                                                           colour_transform=p_header.colour_transform), once=True)
    q100 = opts.q100
    header = replace(prep.header, quality=q100 // 100, quality_frac=q100 % 100, version=None, prior_id=prior_id,
                     prior_q100=p_header.q100, prior_shift=(dy * cell // 16, dx * cell // 16), prior_crop=(cy, cx),
                     prior_planes=((container.PRIOR_GAIN_ONE, 0),) * 2 if p_header.planes else ())
    if header.planes:
        header.chroma_q100 = chroma_quality(q100)
    header.prior_tiles = (0,) * header.tile_count
    parts = getattr(prep, "planes", [prep])                 # PlanarPrepared: Y, Cb, Cr; else the one plane
    fits = []
    for k, (part, (plane, _)) in enumerate(zip(parts, header.coded_planes())):
        fit = fit_gain(plane, part, prior_latents[k], model)
        if fit is None and k == 0:
            return plain
        fits.append(fit or (container.PRIOR_GAIN_ONE, 0))
    header.prior_gain, header.prior_offset = fits[0]
    header.prior_planes = tuple(fits[1:])
    words, flags, coded = {}, [], []
    rdo = RDO_LAMBDA if opts.rdo is None else opts.rdo
    for k, (part, (plane, offset)) in enumerate(zip(parts, header.coded_planes())):
        for local, (w, s, c) in enumerate(code_plane(plane, part, prior_latents[k], model, k > 0, rdo)):
            words[offset + local] = w
            flags.append(s)
            coded.append(c)
    if not any(flags):
        return plain
    header.prior_tiles = tuple(flags)
    result = EncodeResult(container.write(header, words, prep.meta), header, tiles=coded, precision=prep.precision)
    return result if len(result.data) < len(plain.data) else plain


def _gains(model, plane, latents):
    """-> (g_a, g_b (M,) integer gains at the prior plane's and this plane's quality, the float gain)."""
    return (spec.gain_int_at(model.gain_int, latents.q100), spec.gain_int_at(model.gain_int, plane.q100),
            gain_for_quality(model, plane.q100))


def fit_gain(plane, part, latents, model):
    """The prediction's (gain, offset16) for one plane (`plane` its header, `part` its Prepared):
    least squares over the cells the prior covers (fit_pairs), None where it covers none."""
    g_a, g_b, gain = _gains(model, plane, latents)
    unit = replace(plane, prior_gain=container.PRIOR_GAIN_ONE, prior_offset=0)
    pairs = []
    for local, w in enumerate(part.windows):
        p, u = prior.prediction(latents, unit, local, w.y.shape, g_a, g_b)
        if u[0].any():
            pairs.append(((16 * w.y * gain[:, None, None])[:, u[0]], p[:, u[0]]))
    return fit_pairs(pairs) if pairs else None


def code_plane(plane, part, latents, model, chroma: bool, rdo: float):
    """Code one plane's tiles (plane: its header, prior fields included; part: its Prepared) ->
    [(words, step byte, (z_hat, mu16, idx, y_hat_g))] per tile: each tile alone and with the
    prediction at the steps search_step tries, the one with the least D + lambda R kept."""
    g_a, g_b, gain = _gains(model, plane, latents)
    floors, spatial, r = model.floors_at(plane.q100, chroma), model.spatial_at(plane.q100), spec.ref_input(None, g_b)
    lam = rdo or RDO_LAMBDA
    out, start = [], FIRST_STEP
    for local, window in enumerate(part.windows):
        z_hat = round_z(window.z)
        hidden = intnet.trunk(model.net, z_hat)
        y_g = window.y * gain[:, None, None]
        pred, use = prior.prediction(latents, plane, local, y_g.shape, g_a, g_b)
        pad = prior.padding(plane, local, y_g.shape)

        def code(step):
            target = y_g if step is None else y_g.copy()
            adjust = None
            if step is not None:
                inner = prior.adjuster(pred, use, step, pad)

                def adjust(sel, mu16, idx):         # ... and symbol 0 on the padding (its latent := the mean)
                    mu16, idx = inner(sel, mu16, idx)
                    target[sel] = np.where(pad[sel], mu16 / 16, target[sel])
                    return mu16, idx
            coded = latent.encode(model.net, z_hat, r, target, model.z_tables, model.y_tables, floors, rdo,
                                  spatial if step is None else None, hidden, adjust)
            error = np.where(pad, 0, y_g - entropy.dequantize(coded[3], coded[1]))  # the rover's D + lambda R
            return coded, float((error.astype(np.float64) ** 2).sum()) + lam * 32 * coded[0].size
        tried = {None: code(None)}
        if pad.any() and not use.any():
            tried[0] = code(0)          # nothing to predict, but the padding is nearly free
        elif use.any():
            start = search_step(code, tried, start)
        step = min(tried, key=lambda s: (tried[s][1], s is not None, s or 0))   # ties: coded alone
        (words, mu16, idx, symbols), _ = tried[step]
        out.append((words, 0 if step is None else step + 1, (z_hat, mu16, idx, entropy.dequantize(symbols, mu16))))
    return out
