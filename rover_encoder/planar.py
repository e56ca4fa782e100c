"""A colour image coded as luma + chroma planes by a 1-channel model (format 3.0).

    RGB (3,H,W) --bitstream.colour.fit_transform--> the image's colour transform (5 header bytes)
    RGB (3,H,W) --bitstream.colour.to_planes--> Y (H,W), C1, C2 (ceil(H/2), ceil(W/2))
      Y:      Prepared with the library: the stream's references are the luma plane's (kept
              only where they make the luma tiles smaller: rover_encoder.prepared.Prepared)
      Cb, Cr: Prepared without references, float analysis unless a precision is asked for
    encode(q): Y at q, Cb and Cr at chroma_quality(q) --> tiles Y | Cb | Cr, one container

The grey model serves all three planes (it is trained on grey frames and on colour frames' luma),
so colour is coded by the network with the most data behind it; the image's own colour transform
(luma along its texture's colour axis) keeps a pipeline's white balance or palette from moving
texture into the half-size chroma planes.
"""
from dataclasses import replace

from remac.bitstream import colour, container, metadata, spec
from remac.rover_encoder import roi
from remac.rover_encoder.prepared import EncodeResult, Prepared, fit_quality, referenced
from remac.rover_encoder.imageio import SourceImage
from remac.rover_encoder.options import EncodeOptions

CHROMA_SHIFT = 1        # chroma at half size in each direction (4:2:0): full-size chroma cost +33 %
CHROMA_BOOST = 1500     # chroma quality above luma's, in hundredths
# the chroma planes' rover analysis when none is asked for: the int8 analysis (calibrated on luma,
# whose range the low-contrast chroma planes use only a slice of) cost val/color 2.1 % BD-rate vs the
# float one on chroma alone (24 images); chroma is half as many pixels as luma
CHROMA_PRECISION = "float"


def chroma_quality(q100: int) -> int:
    """The chroma planes' quality (hundredths) for luma quality q100: the encoder's choice, carried
    in the stream (RHDR chroma_q100), so changing it never breaks decoding. Chroma planes are
    smooth and cheap: on 12 val/color crops, +15 (or +20) gave -1.7 % BD-rate vs JPEG 2000 against
    chroma at luma's quality, +30 only -0.5 %."""
    return min(q100 + CHROMA_BOOST, 100 * spec.QUALITY_STEPS)


class PlanarPrepared:
    """An RGB image analysed once as three planes (see the module doc), ready at any quality."""

    def __init__(self, img: SourceImage, opts: EncodeOptions, once: bool = False):
        """opts: the luma plane's; once: coded at opts.q100 only
        (Prepared's once)."""
        transform = colour.fit_transform(img.pixels) if opts.colour_transform is None else opts.colour_transform
        planes = colour.to_planes(img.pixels, CHROMA_SHIFT, transform)
        source = lambda p: SourceImage(p[None], 1, img.bit_depth)
        chroma = replace(opts, q100=chroma_quality(opts.q100), library=None, keep_refs=False, force_refs=None,
                         precision=opts.precision or CHROMA_PRECISION, roi=())
        self.regions = opts.roi
        self.planes = [Prepared(source(planes[0]), opts, once=once)]
        self.header = replace(self.planes[0].header, width=img.width, height=img.height, coded_channels=3,
                              output_channels=3, planes=1, chroma_shift=CHROMA_SHIFT, colour_transform=transform,
                              version=None)
        cq = self.chroma_qualities(opts.q100) if once and self.regions else None
        self.planes += [Prepared(source(p), chroma, chroma=True, once=once, qualities=cq) for p in planes[1:]]
        luma = self.planes[0]
        self.precision = luma.precision
        self.meta = metadata.pack(img.metadata)

    def chroma_qualities(self, q100: int) -> list:
        """The chroma tiles' qualities (hundredths) for luma quality q100 with regions of interest:
        chroma_quality of the luma quality the tile's area takes (rover_encoder.roi)."""
        plane = self.header.plane(1)
        return [chroma_quality(q) for q in roi.tile_qualities(plane, self.regions, q100, CHROMA_SHIFT)]

    def encode(self, q100: int, keep_tiles: bool = False) -> EncodeResult:
        """Code the three planes (luma at quality q100, in hundredths) into one stream."""
        cq100 = chroma_quality(q100)
        luma_q = self.planes[0].tile_qualities(q100)
        chroma_eq = roi.tile_qualities(self.header.plane(1), self.regions, q100, CHROMA_SHIFT) if self.regions else None
        chroma_q = [chroma_quality(q) for q in chroma_eq] if chroma_eq else None
        planes = [plane.code(q, keep_tiles, qs)
                  for plane, q, qs in zip(self.planes, (q100, cq100, cq100), (luma_q, chroma_q, chroma_q))]
        luma = planes[0][0]         # the luma plane's references (or none) are the stream's
        levels, tile_map = roi.quality_map(q100, luma_q, chroma_eq and (chroma_eq, chroma_quality))
        header = replace(self.header, library_id=luma.library_id, entropy_ref_id=luma.entropy_ref_id,
                         decoder_ref_id=luma.decoder_ref_id, flags=luma.flags, quality=q100 // spec.QUALITY_STEPS,
                         quality_frac=q100 % spec.QUALITY_STEPS, chroma_q100=cq100, version=None,
                         roi_levels=levels, roi_map=tile_map)
        words, coded = {}, []
        for (_, offset), (_, plane_words, plane_coded) in zip(header.coded_planes(), planes):
            words.update({offset + i: w for i, w in plane_words.items()})
            coded += plane_coded
        eref, dref = referenced(header)
        return EncodeResult(container.write(header, words, self.meta), header, eref, dref,
                            coded if keep_tiles else None, self.precision)

    def fit(self, budget: int, keep_tiles: bool = False) -> EncodeResult:
        return fit_quality(lambda q100: self.encode(q100, keep_tiles), budget)
