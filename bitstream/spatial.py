"""Spatial context for the block-mean channel: channel 0 predicted from its decoded neighbours.

Channel 0 of the klt models is each 16x16 block's mean. The hyperprior (at 1/64) predicts it
poorly: on val/gray at q5 the residual y - mu has power 12.8 (symbol units), but the mean of the
four decoded neighbours' residuals predicts it to 2.3 (val/color luma: 109 -> 4.5), and channel 0
carries half the bits at low rates (52-63 % of y's bits at q5). So channel 0 is coded in three passes over the
tile's latent grid, each pass grouped by scale index like every other group:

    pass 0   (even row, even column)   the hyperprior's mean and scale index, as before
    pass 1   (odd row, odd column)     + the rounded mean of the diagonal neighbours' residuals
    pass 2   (row + column odd)        + the rounded mean of the four direct neighbours' residuals

        col: 0 1 2 3            A residual is e16 = 16 s + (mu16 - mu16_hyper): the decoded value
    row 0:   0 2 0 2            minus the hyperprior's mean, in 1/16. Only neighbours inside the tile
    row 1:   2 1 2 1            and already decoded count (pass 1 sees pass 0, pass 2 sees both).
    row 2:   0 2 0 2            The mean shifts by round(sum e16 / count) (half up), then is clipped
    row 3:   2 1 2 1            to channel 0's range; the scale index moves by delta[pass-1, class]
                                 (a calibrated per-quality-band table of the model), class = how far
apart the neighbours' residuals are (0: agree ... CLASSES-1: an edge), and is clipped to the tables.

Everything is integer arithmetic on integers, identical on rover and ground (bitstream.latent calls
it for both through run_passes). models.hyper.spatial_means runs the same passes for training and calibration.
"""
import numpy as np

from remac.bitstream import spec

CHANNEL = 0             # the channel coded in passes (klt models: the block mean)
CLASSES = 8             # neighbour-spread classes: spread (symbols) 0, 1, 2-3, 4-7, ..., >= 64
THRESHOLDS = (1, 2, 4, 8, 16, 32, 64)
DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))
DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))
NEIGHBOURS = {1: DIAGONAL, 2: DIRECT}
assert len(THRESHOLDS) == CLASSES - 1


def pass_of(h: int, w: int) -> np.ndarray:
    """(h, w) int: the pass (0, 1, 2) that codes each position of channel 0."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.where((i + j) % 2 == 1, 2, np.where(i % 2 == 1, 1, 0))


def _shifted(a: np.ndarray, di: int, dj: int, fill) -> np.ndarray:
    """a (..., h, w) -> out[..., i, j] = a[..., i + di, j + dj] for |di|, |dj| <= 1, `fill` outside the grid."""
    h, w = a.shape[-2:]
    padded = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], constant_values=fill)
    return padded[..., 1 + di:1 + di + h, 1 + dj:1 + dj + w]


def context(e16: np.ndarray, known: np.ndarray, p: int):
    """Pass p (1 or 2): e16 (..., h, w) int64 residuals (valid where known, same shape, bool) ->
    (dmu16 int64 mean shift, cls int64 spread class), both (..., h, w), at every position."""
    total = np.zeros(e16.shape, np.int64)
    count = np.zeros(e16.shape, np.int64)
    hi = np.full(e16.shape, np.iinfo(np.int64).min)
    lo = np.full(e16.shape, np.iinfo(np.int64).max)
    for di, dj in NEIGHBOURS[p]:
        ok = _shifted(known, di, dj, False)
        v = _shifted(e16, di, dj, 0)
        total += np.where(ok, v, 0)
        count += ok
        hi = np.where(ok, np.maximum(hi, v), hi)
        lo = np.where(ok, np.minimum(lo, v), lo)
    c = np.maximum(count, 1)
    dmu16 = np.where(count > 0, (2 * total + c) // (2 * c), 0)
    spread = np.where(count > 1, (hi - lo) >> spec.MEAN_FRAC_BITS, 0)
    cls = sum((spread >= t).astype(np.int64) for t in THRESHOLDS)
    return dmu16, cls


def run_passes(hyper16: np.ndarray, symbols: np.ndarray, lo: int, hi: int, code_pass):
    """Passes 1 and 2 of channel 0, once pass 0 is in `symbols`: hyper16, symbols (..., h, w)
    int64, the hyperprior's means and the symbols (decoded, or rounded, so far). For p = 1, 2 the
    means of that pass's positions `at` shift from the residuals known so far, clipped to [lo, hi],
    then code_pass(p, at, mu16, cls) must fill symbols[at] (the coder: shift the scale indices by
    cls and code; training: round). -> (mu16 (..., h, w): the means every position is coded with,
    cls (..., h, w): the neighbour class of passes 1 and 2, 0 at pass 0)."""
    which = pass_of(*hyper16.shape[-2:])
    mu16, cls_all = hyper16.copy(), np.zeros_like(hyper16)
    known = np.broadcast_to(which == 0, hyper16.shape).copy()
    for p in (1, 2):
        dmu16, cls = context(16 * symbols + mu16 - hyper16, known, p)
        at = np.broadcast_to(which == p, hyper16.shape)
        mu16 = np.where(at, np.clip(hyper16 + dmu16, lo, hi), mu16)
        cls_all = np.where(at, cls, cls_all)
        code_pass(p, at, mu16, cls)
        known |= at
    return mu16, cls_all
