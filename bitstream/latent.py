"""One tile's latent through the entropy model: the same steps on the rover and on the ground.

    z_hat --intnet.hyper_features--> F, and (mu16, idx) of every channel from the hyperprior
    slice 0 = channels slices[0]..slices[1]: the hyperprior's (mu16, idx)
    slice k >= 1: intnet.slice_params(F, 16 * y_hat_g of the channels before it)   (channel context)
    range coder: z by channel, then each slice in turn, its symbols grouped by scale index

A model without channel context has one slice (0, M): z, then all of y by scale index, as formats
1.0 to 3.0 always coded it. The ground can only compute slice k's tables after decoding slices < k,
so both sides run the slices in order.

floors (M,) int, optional: the model's scale-index floors at the stream's quality
(modelfile.EntropyModel.floors_at): every channel's index is raised to at least its floor, after
the network's own clip. They move only probabilities, never symbols or means.
"""
import numpy as np

from bitstream import entropy, intnet


def slices_of(net: dict, m: int) -> list:
    return list(net.get("slices", (0, m)))


def encode(net: dict, z_hat: np.ndarray, r: np.ndarray, y_g: np.ndarray, z_tables, y_tables, floors=None,
           rdo: float = 0.0):
    """Rover: z_hat (Z,h,w) int, r (2M+1,) int, y_g (M,4h,4w) gained latent -> (words (n,) uint32,
    mu16, idx, symbols, each (M,4h,4w) int64). rdo: the rate weight of entropy.rdo_symbols, one
    for all channels or (M,) (0: plain rounding)."""
    lam = np.broadcast_to(np.asarray(rdo, dtype=np.float64), y_g.shape[:1])[:, None, None]
    mu16, idx, symbols = _slices(net, z_hat, r, y_g.shape[0],
                                 lambda s0, s1, mu16, idx: entropy.rdo_symbols(y_g[s0:s1], mu16, idx, y_tables,
                                                                               lam[s0:s1]), floors)
    bounds = slices_of(net, y_g.shape[0])
    return entropy.encode_tile(z_hat, symbols, idx, z_tables, y_tables, bounds), mu16, idx, symbols


def decode(decoder: "entropy.TileDecoder", net: dict, z_hat: np.ndarray, r: np.ndarray, m: int, y_tables,
           floors=None):
    """Ground: the tile decoder after its z -> (mu16, idx, symbols), each (M,4h,4w) int64."""
    return _slices(net, z_hat, r, m, lambda s0, s1, mu16, idx: decoder.y(idx, y_tables), floors)


def _slices(net: dict, z_hat: np.ndarray, r: np.ndarray, m: int, symbols_of, floors=None):
    """The slices in order, on either side: symbols_of(s0, s1, mu16, idx of channels s0..s1) gives
    their symbols (the rover rounds its latent, the ground decodes them), which the next slice's
    parameters read. -> (mu16, idx, symbols), each (M,4h,4w) int64."""
    features, mu16, idx = intnet.hyper_features(net, z_hat, r)
    bounds = slices_of(net, m)
    symbols = np.empty(mu16.shape, np.int64)
    for k, (s0, s1) in enumerate(zip(bounds, bounds[1:])):
        if k:       # 16 * y_hat_g = 16 s + mu16 of every channel decoded so far (exact integers)
            decoded16 = 16 * symbols[:s0] + mu16[:s0]
            mu16[s0:s1], idx[s0:s1] = intnet.slice_params(net, k, features, decoded16, mu16[s0:s1], idx[s0:s1])
        if floors is not None:
            idx[s0:s1] = np.maximum(idx[s0:s1], floors[s0:s1, None, None])
        symbols[s0:s1] = symbols_of(s0, s1, mu16[s0:s1], idx[s0:s1])
    return mu16, idx, symbols
