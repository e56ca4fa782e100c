"""One tile's latent through the entropy model: the same steps on the rover and on the ground.

    z_hat --intnet.trunk--> hidden (once per tile, whatever the reference r)
    (hidden, r) --intnet.hyper_features--> F, and (mu16, idx) of every channel from the hyperprior
    slice 0 = channels slices[0]..slices[1]: the hyperprior's (mu16, idx)
    slice k >= 1: intnet.slice_params(F, 16 * y_hat_g of the channels before it)   (channel context)
    range coder: z by channel, then each slice in turn, its symbols grouped by scale index
    (spatial models: slice 0 as three units, see below)

A model without channel context has one slice (0, M): z, then all of y by scale index, as formats
1.0 to 3.0 always coded it. The ground can only compute slice k's tables after decoding slices < k,
so both sides run the slices in order.

floors (M,) int, optional: the model's scale-index floors at the stream's quality
(modelfile.EntropyModel.floors_at): every channel's index is raised to at least its floor, after
the network's own clip. They move only probabilities, never symbols or means.

spatial (2, CLASSES) int, optional: a model with spatial context (modelfile.EntropyModel.spatial_at)
codes channel 0 of slice 0 in three passes (bitstream.spatial): slice 0's other channels and
channel 0's pass 0 first, then pass 1, then pass 2, each unit grouped by scale index; the later
slices follow as before.
"""
import numpy as np

from remac.bitstream import entropy, intnet, spec
from remac.bitstream.errors import TileError
from remac.bitstream import spatial as bitstream_spatial


def slices_of(net: dict, m: int) -> list:
    return list(net.get("slices", (0, m)))


def encode(net: dict, z_hat: np.ndarray, r: np.ndarray, y_g: np.ndarray, z_tables, y_tables, floors=None,
           rdo: float = 0.0, spatial=None, hidden: np.ndarray = None, adjust=None):
    """Rover: z_hat (Z,h,w) int, r (2M+1,) int, y_g (M,4h,4w) gained latent -> (words (n,) uint32,
    mu16, idx, symbols, each (M,4h,4w) int64). rdo: the rate weight of entropy.rdo_symbols, one
    for all channels or (M,) (0: plain rounding). hidden: intnet.trunk(net, z_hat) when the caller
    already has it (a tile coded with and without a reference), else computed here. adjust: see _slices."""
    if np.ndim(rdo) == 0:       # one weight for all: a number (the same float64 at every position)
        lam = float(rdo)
        of = lambda sel: lam
    else:
        lam = np.broadcast_to(np.broadcast_to(np.asarray(rdo, dtype=np.float64), y_g.shape[:1])[:, None, None], y_g.shape)
        of = lambda sel: lam[sel]
    hidden = intnet.trunk(net, z_hat) if hidden is None else hidden
    mu16, idx, symbols, units = _slices(
        net, hidden, r, y_g.shape[0],
        lambda sel, mu16, idx: entropy.rdo_symbols(y_g[sel], mu16, idx, y_tables, of(sel)), floors, spatial, adjust)
    return entropy.encode_tile(z_hat, symbols, idx, z_tables, y_tables, units), mu16, idx, symbols


def decode(decoder: "entropy.TileDecoder", net: dict, z_hat: np.ndarray, r: np.ndarray, m: int, y_tables,
           floors=None, spatial=None, adjust=None):
    """Ground: the tile decoder after its z -> (mu16, idx, symbols), each (M,4h,4w) int64."""
    return _slices(net, intnet.trunk(net, z_hat), r, m, lambda sel, mu16, idx: decoder.y(idx, y_tables), floors, spatial,
                   adjust)[:3]


def _slices(net: dict, hidden: np.ndarray, r: np.ndarray, m: int, symbols_of, floors=None, spatial=None,
            adjust=None):
    """The coding units in order, on either side, from hidden = intnet.trunk(net, z_hat): symbols_of(sel, mu16[sel], idx[sel]) gives the
    symbols at the (M,4h,4w) bool selection `sel` as a 1-D array in raster order (the rover rounds
    its latent, the ground decodes them); later units' parameters read them. -> (mu16, idx,
    symbols, each (M,4h,4w) int64, units: the selections in coding order, for entropy.encode_tile).
    adjust(sel, mu16[sel], idx[sel]) -> (mu16, idx), if given, replaces each unit's means and scale
    indices just before it is coded (a prior's prediction, bitstream.prior); what it returns is what
    the unit is coded with, and what the contexts of later units read (16 s + mu16)."""
    features, mu16, idx = intnet.hyper_features(net, hidden, r)
    bounds = slices_of(net, m)
    symbols = np.zeros(mu16.shape, np.int64)       # defined everywhere; contexts read decoded ones only
    units = []

    def code(sel):
        if adjust is not None:
            mu16[sel], idx[sel] = adjust(sel, mu16[sel], idx[sel])
        symbols[sel] = symbols_of(sel, mu16[sel], idx[sel])
        units.append(sel)

    for k, (s0, s1) in enumerate(zip(bounds, bounds[1:])):
        if k:       # 16 * y_hat_g = 16 s + mu16 of every channel decoded so far (exact integers)
            decoded16 = 16 * symbols[:s0] + mu16[:s0]
            mu16[s0:s1], idx[s0:s1] = intnet.slice_params(net, k, features, decoded16, mu16[s0:s1], idx[s0:s1])
        if floors is not None:
            idx[s0:s1] = np.maximum(idx[s0:s1], floors[s0:s1, None, None])
        sel = np.zeros(mu16.shape, bool)
        sel[s0:s1] = True
        if k or spatial is None:
            code(sel)
            continue
        sel[bitstream_spatial.CHANNEL] = bitstream_spatial.pass_of(*mu16.shape[1:]) == 0
        code(sel)
        _spatial_passes(net, mu16, idx, symbols, spatial, code)
    return mu16, idx, symbols, units


def _spatial_passes(net: dict, mu16, idx, symbols, spatial, code):
    """Passes 1 and 2 of channel 0 (bitstream.spatial.run_passes), after pass 0 was coded: each
    shifts the means and scale indices of its positions from the residuals decoded so far, then
    codes them."""
    c = bitstream_spatial.CHANNEL

    def code_pass(p, at, mu_c, cls):
        mu16[c] = mu_c
        idx[c][at] = np.clip(idx[c][at] + spatial[p - 1][cls[at]], 0, spec.SCALE_LEVELS - 1)
        sel = np.zeros(mu16.shape, bool)
        sel[c] = at
        code(sel)
    bitstream_spatial.run_passes(mu16[c].copy(), symbols[c], net["out"]["lo"][c], net["out"]["hi"][c], code_pass)


def decode_tile(model, header, words, index, r, local: int = None, chroma: bool = False, adjust=None):
    """Ground (and the rover re-reading a stream): tile `index`'s words -> (z_hat, mu16, idx,
    y_hat_g); y_hat_g (M, ph/16, pw/16) float32. local: the tile's index within its plane, whose
    header `header` is (a planar stream's; default `index`); chroma: the plane is Cb or Cr (its own
    scale-index floors, modelfile.EntropyModel.floors_at); adjust: a prior's prediction (_slices; channel
    0 is then coded in one unit, without the spatial passes).
    TileError on damage."""
    dec = entropy.TileDecoder(words, index)
    z_hat = decode_z(dec, model, header.padded_tile(index if local is None else local), index)
    mu16, idx, s = decode(dec, model.net, z_hat, r, model.m, model.y_tables, model.floors_at(header.q100, chroma),
                          None if adjust else model.spatial_at(header.q100), adjust)
    return z_hat, mu16, idx, entropy.dequantize(s, mu16)


def decode_z(decoder: "entropy.TileDecoder", model, padded: tuple, index: int) -> np.ndarray:
    """A tile's hyper-latent, the first thing in its words: padded (ph, pw) -> z_hat (Z, ph/64, pw/64)
    int64; TileError when it is out of range (damage)."""
    z_hat = decoder.z((model.nz, padded[0] // 64, padded[1] // 64), model.z_tables)
    if np.abs(z_hat).max(initial=0) > spec.Z_CLIP:
        raise TileError(index, f"tile {index}: hyper-latent out of range (damaged)")
    return z_hat
