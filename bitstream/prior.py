"""Re-imaged scenes: a stream coded given an earlier stream of the same pointing (its *prior*;
docs/FORMAT.md, "Re-imaged scenes"). Integer arithmetic only: the rover and the ground compute the
same prediction from the prior's integer latents.

    prior .rmc --entropy decode (bitstream.layers.decode_chain)--> P = 16 s + mu16 per tile (exact)
        tiles placed side by side --> latent_map: P (M, H, W) over the prior's coded canvas
    new stream, tile at cell (r0, c0) of its canvas, cell (i, j):
        P at (r0 + i + shift_y, c0 + j + shift_x)   (a whole number of latent cells, 16 px)
        pred16 = round(P * G_b * gain / (G_a * 1024))   (G: the integer gains at the prior's quality
                                                         a and the stream's b; half up)
                 + offset16 on channel 0                 (the block mean: brightness)
        coded with mean pred16 and scale index max(idx - step, 0) (idx: the hyperprior's and
        channel context's, as in a stream of its own), where the cell lies on the prior's image and
        both gains are non-zero; elsewhere as in a stream of its own, except
        cells wholly outside the canvas (a tile's padding to 64 px): the hyperprior's mean and scale
        index 0 (the rover codes symbol 0 there: padding costs almost nothing)
    step: per tile, 0 .. 63 (header byte 1 + step; 0: the tile is coded as in a stream of its own)

The rover moves the frame by up to 15 px (the crop: rows and columns prepended by edge replication)
so that its 16-px blocks fall on the prior's; the ground drops them again. The rover's shift,
gain and steps are its own choices (rover_encoder.prior); the ground just follows the header.
"""
from dataclasses import dataclass

import numpy as np

from remac.bitstream import container, refine
from remac.bitstream.errors import RemacError, TileError

PRED_CLIP = 2 ** 24         # |pred16| bound (far beyond any latent; keeps every product in int64)


@dataclass
class LatentMap:
    """A prior's decoded latents over its coded canvas: p16 (M, H, W) int64 = 16 s + mu16 (H, W:
    cells with at least one canvas pixel, ceil(side / 16)); lost (H, W) bool: cells of tiles lost
    to damage (a tile predicted from them cannot be decoded); q100: the prior's quality."""
    p16: np.ndarray
    lost: np.ndarray
    q100: int


def latent_map(header: container.Header, tiles: dict, m: int) -> LatentMap:
    """header: the prior's (one plane); tiles {index: (z_hat, mu16, idx, s)} as decoded (lost ones
    absent) -> LatentMap."""
    rows, cols = -(-header.height // 16), -(-header.width // 16)
    t16h, t16w = header.tile_height // 16, header.tile_width // 16
    p16 = np.zeros((m, rows, cols), np.int64)
    lost = np.zeros((rows, cols), bool)
    for index in range(header.tile_count):
        ty, tx = divmod(index, header.tiles_x)
        r0, c0 = ty * t16h, tx * t16w
        r1, c1 = min(r0 + t16h, rows), min(c0 + t16w, cols)
        if index in tiles:
            _, mu16, _, s = tiles[index]
            p16[:, r0:r1, c0:c1] = (16 * s + mu16)[:, :r1 - r0, :c1 - c0]
        else:
            lost[r0:r1, c0:c1] = True
    return LatentMap(p16, lost, header.q100)


def prediction(prior: LatentMap, header: container.Header, index: int, shape: tuple, g_a, g_b):
    """The prediction of tile `index` of the one-plane stream `header` (a planar stream's plane:
    Header.plane; its latent shape (M, h, w)) from the prior's same plane: -> (pred16 (M, h, w)
    int64, use (M, h, w) bool). g_a / g_b: (M,) integer gains at the prior plane's quality and the
    tile's. TileError where the tile needs a cell of a lost prior tile."""
    m, h, w = shape
    ty, tx = divmod(index, header.tiles_x)
    rows = np.arange(h) + ty * (header.tile_height // 16) + header.prior_shift[0]
    cols = np.arange(w) + tx * (header.tile_width // 16) + header.prior_shift[1]
    H, W = prior.p16.shape[1:]
    inside = ((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None, :]
    ri, ci = np.clip(rows, 0, max(H - 1, 0))[:, None], np.clip(cols, 0, max(W - 1, 0))[None, :]
    if (inside & prior.lost[ri, ci]).any():
        raise TileError(index, f"tile {index}: predicted from a lost tile of its prior stream")
    g_a, g_b = np.asarray(g_a, np.int64), np.asarray(g_b, np.int64)
    num = prior.p16[:, ri, ci] * (g_b * header.prior_gain)[:, None, None]
    den = (np.maximum(g_a, 1) * container.PRIOR_GAIN_ONE)[:, None, None]
    pred = np.floor_divide(2 * num + den, 2 * den)
    pred[0] += header.prior_offset
    use = inside[None] & ((g_a > 0) & (g_b > 0))[:, None, None]
    return np.clip(pred, -PRED_CLIP, PRED_CLIP), use


def padding(header: container.Header, index: int, shape: tuple) -> np.ndarray:
    """(M, h, w) bool: the elements of tile `index` (latent shape `shape`) whose 16x16 cell lies wholly
    outside the canvas (the tile's padding to a multiple of 64 px)."""
    top, left, _, _ = header.tile_box(index)
    rows = top + 16 * np.arange(shape[1]) >= header.height
    cols = left + 16 * np.arange(shape[2]) >= header.width
    return np.broadcast_to(rows[:, None] | cols[None, :], shape)


def adjuster(pred: np.ndarray, use: np.ndarray, step: int, pad: np.ndarray):
    """-> adjust(sel, mu16, idx) for bitstream.latent: the prediction as the mean and the scale index
    lowered by `step` (at least 0) where `use`; scale index 0 on the padding `pad`; the hyperprior's
    elsewhere."""
    def adjust(sel, mu16, idx):
        u, p = use[sel], pad[sel]
        return np.where(u & ~p, pred[sel], mu16), np.where(p, 0, np.where(u, np.maximum(idx - step, 0), idx))
    return adjust


class Pool:
    """Streams a decoder may be asked for as priors, by stream ID; ref_input(header) -> the integer
    reference input of a stream's entropy model (its library statistics; spec.ref_input)."""

    def __init__(self, streams=(), ref_input=None):
        self.streams = {refine.stream_id(s): bytes(s) for s in streams}
        self.ref_input = ref_input

    def get(self, header: container.Header) -> bytes:
        """The prior `header` names, or RemacError naming its ID."""
        found = self.streams.get(header.prior_id)
        if found is None:
            given = ", ".join(sorted(i.hex() for i in self.streams)) or "none"
            raise RemacError(f"stream is coded given prior stream {header.prior_id.hex()} (quality "
                             f"{header.prior_q100 / 100:g}), which was not given (--prior PRIOR.rmc; given: {given})")
        return found


def check_prior(header, prior: container.Header, model_id: bytes, prior_id: bytes) -> None:
    """RemacError unless `prior` (the stream prior_id) can be a prior (of `header`, if given): a
    stream of the grey model model_id (one plane, or luma + chroma planes), a stream of its own (not
    a refinement layer, no quality map), with the planes, chroma size and colour transform the header
    has, at the quality the header names."""
    pid = prior_id.hex()
    if prior.model_id != model_id or prior.coded_channels != (3 if prior.planes else 1):
        raise RemacError(f"prior stream {pid} is of another model: it cannot be a prior")
    if prior.layer or prior.roi_levels:
        raise RemacError(f"prior stream {pid} is a refinement layer or codes regions of interest: "
                         f"not supported as a prior")
    if header is None:
        return
    if (prior.planes, prior.chroma_shift, prior.colour_transform) != (header.planes, header.chroma_shift,
                                                                      header.colour_transform):
        raise RemacError(f"stream names prior {pid}, but that stream's planes or colour transform differ from its own")
    if prior.q100 != header.prior_q100:
        raise RemacError(f"stream names prior {pid} at quality {header.prior_q100 / 100:g}, but that stream is at "
                         f"quality {prior.q100 / 100:g} (damaged header)")
