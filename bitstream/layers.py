"""A chain of layers -- a stream and the refinements on top of it -- entropy-decoded to the top
layer's symbols, on the ground (before synthesis) and on the rover (before coding one more layer).

    base .rmc  --latent.decode_tile------------------> (s, mu16) per tile   quality q0
    layer 1    --refine.decode_tile(.., below, ..)---> (s, mu16) per tile   quality q1
    layer 2    --refine.decode_tile(.., below, ..)---> ...                  quality q2

Each layer's header names the layer below by refine.stream_id (its whole bytes) and quality; a
chain given in another order, or with a stream from another image, is refused by name before
anything is decoded. A tile lost in one layer is lost in every layer above it.
"""
from dataclasses import dataclass, field

import numpy as np

from remac.bitstream import container, entropy, latent, prior, refine, spec
from remac.bitstream.errors import RemacError, TileError


@dataclass
class Chain:
    header: container.Header                    # the top layer's
    tiles: dict = field(default_factory=dict)   # stream tile index -> (z_hat, mu16, idx, s) of the top layer, int64
    lost: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def latents(self) -> dict:
        """{index: y_hat_g (M,4h,4w) float32} of the top layer (what synthesis reads)."""
        return {i: entropy.dequantize(t[3], t[1]) for i, t in self.tiles.items()}


def check_chain(streams: list, parsed: list) -> None:
    """streams: the layers' bytes, base first; parsed: their container.read results. RemacError
    (one line, naming the IDs) unless each layer k >= 1 is refinement layer k of the stream before
    it, of the same image geometry and model; checked from the top down, so the message names what
    the layer asked for needs."""
    for k in reversed(range(1, len(streams))):         # from the top: what the layer given needs
        h, below = parsed[k].header, parsed[k - 1].header
        if not h.layer:
            raise RemacError(f"stream {k + 1} of the chain ({refine.stream_id(streams[k]).hex()}) is not a "
                             f"refinement layer")
        found = refine.stream_id(streams[k - 1])
        if h.base_id != found:
            raise RemacError(f"refinement layer {h.layer} needs base stream {h.base_id.hex()} (quality "
                             f"{h.base_q100 / 100:g}), but was given {found.hex()} (quality {below.q100 / 100:g})")
        if h.layer != below.layer + 1 or h.base_q100 != below.q100:
            raise RemacError(f"refinement layer {h.layer} names base {h.base_id.hex()} at quality "
                             f"{h.base_q100 / 100:g}, but that stream is layer {below.layer} at quality "
                             f"{below.q100 / 100:g} (damaged header)")
        same = ("model_id", "width", "height", "coded_channels", "output_channels", "bit_depth", "tile_width",
                "tile_height", "planes", "chroma_shift", "colour_transform")
        if any(getattr(h, f) != getattr(below, f) for f in same):
            raise RemacError(f"refinement layer {h.layer} does not match the geometry or model of its base "
                             f"{h.base_id.hex()}")
    base = parsed[0].header
    if base.roi_levels:
        raise RemacError(f"stream {refine.stream_id(streams[0]).hex()} codes regions of interest (a quality map): "
                         f"refinement layers of such a stream are not supported")
    if base.layer:
        raise RemacError(f"the first stream is refinement layer {base.layer} of base {base.base_id.hex()}, "
                         f"not a base stream: give that base (and the layers between) first")


MAX_PRIORS = 32         # priors of priors followed at most (each names the one before by its whole bytes)


def prior_map(header: container.Header, model, pool: "prior.Pool", depth: int = 0) -> list:
    """The decoded latents of the prior `header` names, from `pool` (itself decoded with its own
    prior where it has one): [prior.LatentMap] per plane. RemacError naming the ID when it is missing
    or cannot be a prior."""
    return prior_latents((pool or prior.Pool()).get(header), model, pool, depth, header)[1]


def prior_latents(data: bytes, model, pool: "prior.Pool" = None, depth: int = 0, named_by: container.Header = None):
    """A stream to serve as a prior (bytes) -> (its header, [prior.LatentMap] of its planes: the one,
    or Y, Cb, Cr), checked (prior.check_prior; against the header that names it, if given)."""
    if depth >= MAX_PRIORS:
        raise RemacError(f"more than {MAX_PRIORS} priors of priors")
    parsed = container.read(bytes(data))
    prior.check_prior(named_by, parsed.header, model.model_id, refine.stream_id(data))
    r = spec.ref_input(None, spec.gain_int_at(model.gain_int, parsed.header.q100))
    if parsed.header.entropy_ref_used:
        if pool is None or pool.ref_input is None:
            raise RemacError(f"prior stream {refine.stream_id(data).hex()} needs its reference library to be re-read")
        r = pool.ref_input(parsed.header)
    chain = decode_chain([data], model, r, [parsed], pool, depth + 1)
    return parsed.header, [prior.latent_map(plane, {i - offset: t for i, t in chain.tiles.items()
                                                    if offset <= i < offset + plane.tile_count}, model.m)
                           for plane, offset in parsed.header.coded_planes()]


def decode_chain(streams: list, model, r, parsed: list = None, pool: "prior.Pool" = None, depth: int = 0) -> Chain:
    """streams: the layers' bytes, base first (one stream: a plain decode); model: the stream's
    modelfile.EntropyModel; r: the base's reference input of its (luma) plane (spec.ref_input;
    chroma planes and refinements use none). -> Chain of the top layer, tiles keyed by stream tile
    index (planes Y, Cb, Cr as in the stream). Damaged tiles are lost (listed), not fatal; a damaged
    header or a mismatched chain raises. pool: streams the base may name as its prior (bitstream.prior)."""
    parsed = parsed or [container.read(bytes(s)) for s in streams]
    check_chain(streams, parsed)
    base = parsed[0].header
    chain = Chain(base, problems=[reason for p in parsed for _, reason in p.damaged])
    predicted = prior_map(base, model, pool, depth) if base.has_prior else None
    gains = lambda k, plane: (spec.gain_int_at(model.gain_int, predicted[k].q100),
                              spec.gain_int_at(model.gain_int, plane.q100))
    for k, (plane, offset) in enumerate(base.coded_planes()):
        r_plane = r if k == 0 else spec.ref_input(None, spec.gain_int_at(model.gain_int, plane.q100))
        for local in range(plane.tile_count):
            index = offset + local
            try:
                if index not in parsed[0].tiles:
                    raise TileError(index, f"tile {index} is missing")
                adjust = None
                if predicted is not None and base.prior_tiles[index]:
                    shape = (model.m, *(side // 16 for side in plane.padded_tile(local)))
                    adjust = prior.adjuster(*prior.prediction(predicted[k], plane, local, shape, *gains(k, plane)),
                                            base.prior_tiles[index] - 1, prior.padding(plane, local, shape))
                z_hat, mu16, idx, y = latent.decode_tile(model, plane, parsed[0].tiles[index], index, r_plane, local,
                                                         chroma=k > 0, adjust=adjust)
                chain.tiles[index] = (z_hat, mu16, idx, symbols_of(y, mu16))
            except TileError as exc:
                chain.lost.append(index)
                chain.problems.append(str(exc))
    for p in parsed[1:]:
        chain = refine_chain(chain, p, model)
    return chain


def refine_chain(chain: Chain, parsed: container.Parsed, model) -> Chain:
    """One more layer on top of `chain` (its header already checked by check_chain). Each plane is
    refined from its quality in the layer below to its quality in this one (chroma: chroma_q100)."""
    layer = parsed.header.layer
    out = Chain(parsed.header, lost=list(chain.lost), problems=list(chain.problems))
    for k, ((plane, offset), (below, _)) in enumerate(zip(parsed.header.coded_planes(), chain.header.coded_planes())):
        g_a, g_b = (spec.gain_int_at(model.gain_int, h.q100) for h in (below, plane))
        for local in range(plane.tile_count):
            index = offset + local
            if index in chain.lost:
                continue
            try:
                if index not in parsed.tiles:
                    raise TileError(index, f"layer {layer}: tile {index} is missing")
                _, mu16_a, _, s_a = chain.tiles[index]
                out.tiles[index] = refine.decode_tile(model, parsed.tiles[index], index, plane.padded_tile(local),
                                                      (s_a, mu16_a), g_a, g_b, model.floors_at(plane.q100, k > 0),
                                                      model.spatial_at(plane.q100))
            except TileError as exc:
                out.lost.append(index)
                out.problems.append(str(exc))
    out.lost.sort()
    return out


def symbols_of(y_hat_g: np.ndarray, mu16: np.ndarray) -> np.ndarray:
    """Inverse of entropy.dequantize: y_hat_g = s + mu16/16 (exact in float32) -> s int64."""
    return (np.round(y_hat_g.astype(np.float64) * 2 ** spec.MEAN_FRAC_BITS).astype(np.int64) - mu16) \
        >> spec.MEAN_FRAC_BITS
