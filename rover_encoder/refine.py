"""A refinement layer on the rover: what the ground lacks to turn the streams it holds of an
image into a stream of a finer quality (bitstream.refine; docs/FORMAT.md, "Refinement layers").

    image --prepare (g_a, no references; colour: Y, Cb, Cr planes)--> y per tile
    streams already sent (base, layer 1, ...) --bitstream.layers.decode_chain--> (s, mu16) per tile
        (the integer entropy path only: no image decoding, no torch)
    per tile: z_b = round(h_a(y * gain_b)); refine.encode_tile(z_b, y * gain_b, (s, mu16) below)
    --> container.write(header at quality b, layer k+1, base_id = stream_id(layer k))

The rover keeps nothing but the streams it sent (which it holds for the downlink anyway).
"""
from dataclasses import replace

from remac.bitstream import container, entropy, layers, refine, spec
from remac.bitstream.errors import RemacError
from remac.rover_encoder.analysis import gain_for_quality
from remac.rover_encoder.encode import prepare
from remac.rover_encoder.prepared import RDO_LAMBDA, EncodeResult, hyper_latent
from remac.rover_encoder.imageio import SourceImage
from remac.rover_encoder.options import EncodeOptions
from remac.rover_encoder.planar import chroma_quality


def below_of(streams: list, model, library=None) -> layers.Chain:
    """The streams of an image sent so far (bytes, base first) -> their top layer's symbols and
    means per tile. A stream the rover sent must be whole: damage or lost tiles are refused."""
    parsed = [container.read(bytes(s)) for s in streams]
    base = parsed[0].header
    if base.model_id != model.model_id:
        raise RemacError(f"base stream was coded by model {base.model_id.hex()}, this encoder runs "
                         f"{model.model_id.hex()}")
    stats = None
    if base.entropy_ref_used:
        if library is None or library.id_bytes != base.library_id:
            raise RemacError(f"base stream needs reference library {base.library_id.hex()} to be re-read")
        stats = library.stats16(base.entropy_ref_id.hex())
    chain = layers.decode_chain(streams, model, spec.ref_input(stats, spec.gain_int_at(model.gain_int, base.q100)),
                                parsed)
    if chain.problems:
        raise RemacError(f"the streams to refine are damaged: {'; '.join(chain.problems[:3])}")
    return chain


def encode_refinement(img: SourceImage, streams: list, opts: EncodeOptions) -> EncodeResult:
    """Code `img` at quality opts.q100 (hundredths) as the next refinement layer of `streams` (bytes, base first, each
    layer after the first a refinement of the one before it), which must be streams of this image.
    A colour image coded as luma + chroma planes refines each plane (chroma at
    planar.chroma_quality). -> EncodeResult of the new layer (no metadata: the base carries it).
    opts.library: the rover's, needed only when the base used an entropy reference (the layer itself
    keeps none); opts.threads, precision, model, rdo: as Prepared's; the tile is the base's."""
    if not streams:
        raise RemacError("a refinement needs the stream(s) it refines")
    below = container.read(bytes(streams[-1])).header
    if below.tile_width != below.tile_height:
        raise RemacError(f"base tiles are {below.tile_width}x{below.tile_height}; refinement needs square tiles")
    if below.layer >= 255:
        raise RemacError("a chain holds at most 255 refinement layers")
    prep = prepare(img, replace(opts, library=None, tile=below.tile_width, colour_transform=below.colour_transform))
    planes = getattr(prep, "planes", [prep])               # PlanarPrepared: Y, Cb, Cr; else the one plane
    entropy_model = planes[0].model
    mine = (prep.header.width, prep.header.height, prep.header.coded_channels, prep.header.bit_depth,
            prep.header.planes)
    if mine != (below.width, below.height, below.coded_channels, below.bit_depth, below.planes):
        raise RemacError(f"the image ({mine[0]}x{mine[1]}, {mine[2]} channel(s), {mine[3]} bit) is not the one "
                         f"the base stream codes ({below.width}x{below.height}, {below.coded_channels} "
                         f"channel(s), {below.bit_depth} bit)")
    chain = below_of(streams, entropy_model, opts.library)
    q100 = opts.q100
    header = replace(prep.header, quality=q100 // spec.QUALITY_STEPS, quality_frac=q100 % spec.QUALITY_STEPS,
                     chroma_q100=chroma_quality(q100) if prep.header.planes else 0, version=None,
                     layer=below.layer + 1, base_id=refine.stream_id(streams[-1]), base_q100=below.q100)
    words, coded = {}, []
    for k, (part, (plane, offset), (plane_below, _)) in enumerate(zip(planes, header.coded_planes(),
                                                                      below.coded_planes())):
        gain = gain_for_quality(entropy_model, plane.q100)
        g_a, g_b = (spec.gain_int_at(entropy_model.gain_int, h.q100) for h in (plane_below, plane))
        for local, window in enumerate(part.windows):
            _, mu16_a, _, s_a = chain.tiles[offset + local]
            z_hat = hyper_latent(part.analyzer, window, gain)
            words[offset + local], mu16, idx, s = refine.encode_tile(
                entropy_model, z_hat, window.y * gain[:, None, None], (s_a, mu16_a), g_a, g_b,
                entropy_model.floors_at(plane.q100, k > 0), RDO_LAMBDA if opts.rdo is None else opts.rdo,
                entropy_model.spatial_at(plane.q100))
            coded.append((z_hat, mu16, idx, entropy.dequantize(s, mu16)))
    return EncodeResult(container.write(header, words), header, tiles=coded, precision=prep.precision)
