"""Reading and writing the .rmc container (docs/FORMAT.md). Pure Python + numpy.

    write(header, tiles, metadata=b"")  -> bytes
    read(data)            -> Parsed(header, tiles {index: words}, damaged [(index or None, reason)],
                                    metadata payload)

Every field is validated before anything is allocated from it; structural damage raises
FormatError, while a damaged TILE segment (bad CRC or inconsistent payload) is reported in
`damaged` so the caller can decide to refuse (--strict) or conceal it.
"""
import math
import struct
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from remac.bitstream.colour import TRANSFORM_BYTES
from remac.bitstream.errors import FormatError

SIGNATURE = b"\x89RMC\r\n\x1a\n"
VERSION = (4, 0)                # the version written (1.0-3.0 are read, and written only when asked for)
BIT_DEPTHS = {1: (8, 16), 2: (8, 10, 12, 14, 16), 3: (8, 10, 12, 14, 16), 4: (8, 10, 12, 14, 16)}  # per major read
METADATA = b"meta"              # ancillary metadata segment (bitstream/metadata.py)
MAX_SEGMENT = 2 ** 28
MAX_SIDE = 65535
MAX_PIXELS = 2 ** 28
_HDR = struct.Struct(">BB8s8s8s8sIIBBBBHHIBB")
_PLANES = struct.Struct(">BBH")         # 3.0: planes, chroma_shift, chroma_q100 (RHDR bytes 56..59)
# 4.0, the compact layout: version, model_id, width, height, layout, bit_depth, q100, tile sides / 64, flags;
# then chroma_q100 (planes only) and library_id + reference IDs (flags bit 1 only)
_HDR4 = struct.Struct(">BB8sHHBBHBBB")
assert _HDR.size == 56 and _PLANES.size == 4 and _HDR4.size == 21
COMPACT = 4                     # the first major version with the compact layout (no word_count, no REND)
REFS_PRESENT = 2                # 4.0 RHDR flags bit 1: library_id and the reference IDs follow
REFINES = 4                     # 4.0 RHDR flags bit 2: a refinement layer; base_id, layer, base_q100 follow
_REFINE = struct.Struct(">8sBH")    # base_id, layer, base_q100 (docs/FORMAT.md, "Refinement layers")
ROI_MAP = 8                     # 4.0 RHDR flags bit 3: a per-tile quality map follows (regions of interest)
COLOUR_TRANSFORM = 16           # 4.0 RHDR flags bit 4: the planes' colour transform follows (5 bytes)
PRIOR = 32                      # 4.0 RHDR flags bit 5: coded given an earlier stream (a re-imaged scene)
_PRIOR = struct.Struct(">8sHhhBBHh")    # prior_id, prior_q100, shift y/x (cells), crop y/x (px), gain, offset16
_PRIOR_CHROMA = struct.Struct(">HhHh")  # planes: the chroma planes' gain, offset16 (C1, then C2)
PRIOR_GAIN_ONE = 1024           # prior_gain: the prediction's multiplier in 1/1024
MAX_PRIOR_STEP = 63             # a tile's scale-index offset: 0 .. 63, coded as 1 .. 64 (0: no prediction)
MAX_ROI_LEVELS = 15             # qualities a map may name besides the stream's own (4 bits per tile at most)
ZERO_ID = bytes(8)


@dataclass
class Header:
    model_id: bytes
    width: int
    height: int
    coded_channels: int
    output_channels: int
    bit_depth: int
    quality: int
    tile_width: int
    tile_height: int
    library_id: bytes = ZERO_ID
    entropy_ref_id: bytes = ZERO_ID
    decoder_ref_id: bytes = ZERO_ID
    flags: int = 0
    version: tuple = None           # None: VERSION (an older one only when asked for, e.g. by tests)
    quality_frac: int = 0           # hundredths added to `quality` (format 2.0)
    planes: int = 0                 # 3.0: 1 = the image is coded as Y, Cb, Cr planes by a 1-channel model
    chroma_shift: int = 0           # 3.0: chroma planes are ceil(width / 2**shift) x ceil(height / 2**shift)
    chroma_q100: int = 0            # 3.0: the chroma planes' quality in hundredths (0..10000)
    layer: int = 0                  # 4.0: 0 = a stream of its own; k >= 1 = refinement layer k of a chain
    base_id: bytes = ZERO_ID        # 4.0 refinement: bitstream.refine.stream_id of the layer below
    base_q100: int = 0              # 4.0 refinement: that layer's quality in hundredths
    # 4.0 quality map (regions of interest, flags bit 3): roi_levels ((q100, chroma_q100), ...) are
    # levels 1..K (level 0: the stream's q100 / chroma_q100; chroma_q100 0 unless planes); roi_map
    # holds one level per tile: the Y (or only) plane's tiles row-major, then (planes) the chroma
    # grid's, one entry per chroma tile position, shared by Cb and Cr. Both empty: no map.
    roi_levels: tuple = ()
    roi_map: tuple = ()
    # 4.0 planes (flags bit 4): the image's own colour transform (bitstream.colour.transform_matrix,
    # 5 bytes); b"": BT.601
    colour_transform: bytes = b""
    # 4.0 prior (flags bit 5; docs/FORMAT.md, "Re-imaged scenes"): the stream is coded given an earlier
    # stream, prior_id (bitstream.refine.stream_id) at quality prior_q100; its latent cell (i, j) is
    # predicted by the prior's (i + shift[0], j + shift[1]) (times prior_gain / 1024, channel 0 plus
    # prior_offset / 16); the coded canvas is the image with crop = (rows, columns) prepended (width,
    # height are the canvas's); prior_tiles: per tile 0 (coded alone) or 1 + its scale-index offset;
    # prior_planes: a planar stream's chroma planes' ((gain, offset16), (gain, offset16)) (prior_gain /
    # prior_offset are the luma plane's).
    prior_id: bytes = ZERO_ID
    prior_q100: int = 0
    prior_shift: tuple = (0, 0)
    prior_crop: tuple = (0, 0)
    prior_gain: int = PRIOR_GAIN_ONE
    prior_offset: int = 0
    prior_tiles: tuple = ()
    prior_planes: tuple = ()

    @property
    def has_prior(self) -> bool:
        return self.prior_id != ZERO_ID

    @property
    def image_size(self) -> tuple:
        """(width, height) of the image itself: the canvas less a prior stream's crop."""
        return self.width - self.prior_crop[1], self.height - self.prior_crop[0]

    def __post_init__(self):
        if self.version is None:
            self.version = self.required_version()

    def required_version(self) -> tuple:
        """The version written: 4.0, the compact layout, for every stream (57 bytes of framing
        around a one-tile stream instead of 108: a fifth of the rate of a 256² crop at q5). Older
        encoders wrote the lowest of 1.0, 2.0, 3.0 that carried the fields, which `lowest_version`
        still tells."""
        return VERSION

    def lowest_version(self) -> tuple:
        """The lowest version whose layout carries these fields: 1.0 unless the stream needs 2.0 (a
        bit depth other than 8/16, or a fractional quality) or 3.0 (luma/chroma planes)."""
        if self.planes:
            return (3, 0)
        return (1, 0) if self.bit_depth in BIT_DEPTHS[1] and not self.quality_frac else (2, 0)

    def plane(self, k: int) -> "Header":
        """The header of plane k of a planar stream (0: Y at full size, with the stream's references
        and quality; 1, 2: Cb, Cr at 1/2**chroma_shift, no references, quality chroma_q100), each a
        1-channel stream of its own whose tiles are this stream's from plane_offset(k) on."""
        if k == 0:
            h = Header(self.model_id, self.width, self.height, 1, 1, self.bit_depth, self.quality,
                       self.tile_width, self.tile_height, self.library_id, self.entropy_ref_id,
                       self.decoder_ref_id, self.flags, quality_frac=self.quality_frac)
        else:
            f = 1 << self.chroma_shift
            h = Header(self.model_id, -(-self.width // f), -(-self.height // f), 1, 1, self.bit_depth,
                       self.chroma_q100 // 100, self.tile_width, self.tile_height, quality_frac=self.chroma_q100 % 100)
        if self.has_prior:      # the plane's part: its shift in its own cells, its gain and offset, its tiles
            f = 1 << (self.chroma_shift if k else 0)
            counts = [math.prod(self.plane_geometry(j)) for j in range(3)]
            gain, offset = (self.prior_gain, self.prior_offset) if k == 0 else self.prior_planes[k - 1]
            h.prior_id, h.prior_q100, h.prior_gain, h.prior_offset = self.prior_id, self.prior_q100, gain, offset
            h.prior_shift = tuple(v // f for v in self.prior_shift)
            h.prior_tiles = tuple(self.prior_tiles[sum(counts[:k]):sum(counts[:k + 1])])
        if self.roi_levels:     # the plane's part of the map, its own qualities as a one-plane stream's levels
            luma = self.tiles_x * self.tiles_y
            part = self.roi_map[:luma] if k == 0 else self.roi_map[luma:]
            h.roi_levels, h.roi_map = tuple((level[min(k, 1)], 0) for level in self.roi_levels), tuple(part)
        return h

    def map_size(self) -> int:
        """Entries a quality map of this geometry holds: the Y (or only) plane's tiles, plus one per
        chroma tile position (planes)."""
        return sum(math.prod(self.plane_geometry(k)) for k in ((0, 1) if self.planes else (0,)))

    def plane_geometry(self, k: int) -> tuple:
        """(tiles across, tiles down) of plane k's grid (k 0: the image's; 1, 2: the chroma planes')."""
        f = 1 << (self.chroma_shift if k else 0)
        return math.ceil(-(-self.width // f) / self.tile_width), math.ceil(-(-self.height // f) / self.tile_height)

    def tile_q100(self, index: int) -> int:
        """Quality in hundredths of stream tile `index`: the stream's (a chroma plane's: chroma_q100),
        or the quality map's level for that tile (docs/FORMAT.md, "Quality map")."""
        if self.planes:
            for k in (2, 1, 0):
                offset = self.plane_offset(k)
                if index >= offset:
                    return self.plane(k).tile_q100(index - offset)
        level = self.roi_map[index] if self.roi_levels else 0
        return self.roi_levels[level - 1][0] if level else self.q100

    def at_q100(self, q100: int) -> "Header":
        """This one-plane header at quality q100 and without a map: what one tile of a mapped plane
        is coded as."""
        return replace(self, quality=q100 // 100, quality_frac=q100 % 100, roi_levels=(), roi_map=())

    def coded_planes(self) -> list:
        """-> [(plane header, index of its first tile)]: the stream itself for a one-plane stream,
        else Y, Cb, Cr (see plane)."""
        if not self.planes:
            return [(self, 0)]
        return [(self.plane(k), self.plane_offset(k)) for k in range(3)]

    def plane_offset(self, k: int) -> int:
        """Index of plane k's first tile (planes are numbered Y, Cb, Cr, each row-major)."""
        return sum(self.plane(j).tile_count for j in range(k))

    @property
    def q100(self) -> int:
        """Quality in hundredths (what the gain tables are interpolated at)."""
        return self.quality * 100 + self.quality_frac

    @property
    def quality_value(self):
        """Quality as a number for people and JSON: int when whole, else float (50.25)."""
        return self.quality if not self.quality_frac else self.q100 / 100

    @property
    def tiles_x(self):
        return math.ceil(self.width / self.tile_width)

    @property
    def tiles_y(self):
        return math.ceil(self.height / self.tile_height)

    @property
    def tile_count(self):
        """Tiles in the stream: of the frame's grid, or of all three planes' grids (planes)."""
        if self.planes:
            return self.plane_offset(3)
        return self.tiles_x * self.tiles_y

    @property
    def entropy_ref_used(self):
        return bool(self.flags & 1)

    def tile_box(self, index):
        """-> (top, left, height, width) of tile `index` in image pixels."""
        ty, tx = divmod(index, self.tiles_x)
        top, left = ty * self.tile_height, tx * self.tile_width
        return top, left, min(self.tile_height, self.height - top), min(self.tile_width, self.width - left)

    def padded_tile(self, index):
        """-> (ph, pw): tile `index`'s size rounded up to multiples of 64 (what the codec analyses)."""
        _, _, h, w = self.tile_box(index)
        return -(-h // 64) * 64, -(-w // 64) * 64

    @property
    def compact(self) -> bool:
        """4.x: the compact layout (docs/FORMAT.md)."""
        return self.version[0] >= COMPACT

    def pack(self) -> bytes:
        self.validate()
        if self.compact:
            return self._pack_compact()
        head = _HDR.pack(*self.version, self.model_id, self.library_id, self.entropy_ref_id,
                         self.decoder_ref_id, self.width, self.height, self.coded_channels,
                         self.output_channels, self.bit_depth, self.quality, self.tile_width,
                         self.tile_height, self.tile_count, self.flags, self.quality_frac)
        if self.version[0] < 3:
            return head
        return head + _PLANES.pack(self.planes, self.chroma_shift, self.chroma_q100)

    def _pack_compact(self) -> bytes:
        layout = self.coded_channels | self.output_channels << 2 | self.planes << 4 | self.chroma_shift << 5
        refs = self.library_id != ZERO_ID
        head = _HDR4.pack(*self.version, self.model_id, self.width, self.height, layout, self.bit_depth,
                          self.q100, self.tile_width // 64, self.tile_height // 64,
                          self.flags | (REFS_PRESENT if refs else 0) | (REFINES if self.layer else 0)
                          | (ROI_MAP if self.roi_levels else 0) | (COLOUR_TRANSFORM if self.colour_transform else 0)
                          | (PRIOR if self.has_prior else 0))
        if self.planes:
            head += struct.pack(">H", self.chroma_q100)
        head += self.library_id + self.entropy_ref_id + self.decoder_ref_id if refs else b""
        head += _REFINE.pack(self.base_id, self.layer, self.base_q100) if self.layer else b""
        head += self.colour_transform
        if self.has_prior:
            head += _PRIOR.pack(self.prior_id, self.prior_q100, *self.prior_shift, *self.prior_crop, self.prior_gain,
                                self.prior_offset)
            head += _PRIOR_CHROMA.pack(*self.prior_planes[0], *self.prior_planes[1]) if self.planes else b""
            head += bytes(self.prior_tiles)
        return head + (self._pack_map() if self.roi_levels else b"")

    def _pack_map(self) -> bytes:
        """The quality map (flags bit 3): K, K levels (q100, and chroma_q100 with planes), then one
        level per map entry in bits = K.bit_length(), most significant bit first, zero-padded to a byte."""
        k = len(self.roi_levels)
        out = bytes([k]) + b"".join(struct.pack(">HH" if self.planes else ">H", *level[:1 + self.planes])
                                    for level in self.roi_levels)
        bits = k.bit_length()
        value = 0
        for level in self.roi_map:
            value = value << bits | level
        n = -(-len(self.roi_map) * bits // 8)
        return out + (value << (8 * n - len(self.roi_map) * bits)).to_bytes(n, "big")

    def _unpack_map(self, payload: bytes, pos: int) -> None:
        """Read the quality map at payload[pos:] (it must end the payload) into roi_levels / roi_map."""
        if pos >= len(payload) or not 1 <= payload[pos] <= MAX_ROI_LEVELS:
            raise FormatError(f"RHDR: quality map needs 1..{MAX_ROI_LEVELS} levels")
        k, width = payload[pos], 4 if self.planes else 2
        entries, bits = self.map_size(), payload[pos].bit_length()
        size = 1 + k * width + -(-entries * bits // 8)
        if len(payload) - pos != size:
            raise FormatError(f"RHDR segment has {len(payload)} bytes, expected {pos + size}")
        levels = [struct.unpack_from(">HH" if self.planes else ">H", payload, pos + 1 + width * j) for j in range(k)]
        self.roi_levels = tuple((lv[0], lv[1] if self.planes else 0) for lv in levels)
        packed = int.from_bytes(payload[pos + 1 + k * width:], "big")
        pad = 8 * (size - 1 - k * width) - entries * bits
        if packed & ((1 << pad) - 1):
            raise FormatError("RHDR: quality map padding bits are not zero")
        packed >>= pad
        mask = (1 << bits) - 1
        self.roi_map = tuple((packed >> (bits * (entries - 1 - i))) & mask for i in range(entries))

    @classmethod
    def _unpack_compact(cls, payload: bytes) -> "Header":
        if len(payload) < _HDR4.size:
            raise FormatError(f"RHDR segment has {len(payload)} bytes, expected at least {_HDR4.size}")
        major, minor, model_id, width, height, layout, depth, q100, tw, th, flags = _HDR4.unpack_from(payload)
        if layout & 0xC0 or flags & ~(1 | REFS_PRESENT | REFINES | ROI_MAP | COLOUR_TRANSFORM | PRIOR):
            raise FormatError(f"RHDR: unknown layout bits 0x{layout & 0xC0:02x} or flags 0x{flags:02x}")
        planes, refs, refines = layout >> 4 & 1, bool(flags & REFS_PRESENT), bool(flags & REFINES)
        transformed = bool(flags & COLOUR_TRANSFORM)
        size = _HDR4.size + 2 * planes + 24 * refs + _REFINE.size * refines + TRANSFORM_BYTES * transformed
        prior_tiles = _tile_count(width, height, 64 * max(tw, 1), 64 * max(th, 1), planes, layout >> 5 & 1)
        size += (_PRIOR.size + _PRIOR_CHROMA.size * planes + prior_tiles) * bool(flags & PRIOR)
        mapped = bool(flags & ROI_MAP)
        if (len(payload) <= size) if mapped else (len(payload) != size):    # a map adds 2 bytes or more
            more = " and a quality map" if mapped else ""
            raise FormatError(f"RHDR segment has {len(payload)} bytes, expected {size}{more}")
        if q100 > 100 * 100:
            raise FormatError(f"RHDR: quality {q100 / 100} out of range 0..100")
        pos, chroma_q100 = _HDR4.size, 0
        if planes:
            (chroma_q100,) = struct.unpack_from(">H", payload, pos)
            pos += 2
        ids = [payload[pos + 8 * k:pos + 8 * k + 8] for k in range(3)] if refs else [ZERO_ID] * 3
        if refs and ids[0] == ZERO_ID:
            raise FormatError("RHDR: reference fields present but library_id is zero")
        base_id, layer, base_q100 = _REFINE.unpack_from(payload, pos + 24 * refs) if refines else (ZERO_ID, 0, 0)
        if refines and not layer:
            raise FormatError("RHDR: refinement fields present but layer is 0")
        pos += 24 * refs + _REFINE.size * refines
        transform = payload[pos:pos + TRANSFORM_BYTES] if transformed else b""
        pos += TRANSFORM_BYTES * transformed
        prior = {}
        if flags & PRIOR:
            pid, pq, sy, sx, cy, cx, gain, offset = _PRIOR.unpack_from(payload, pos)
            if pid == ZERO_ID:
                raise FormatError("RHDR: prior fields present but prior_id is zero")
            pos += _PRIOR.size
            chroma = ()
            if planes:
                g1, o1, g2, o2 = _PRIOR_CHROMA.unpack_from(payload, pos)
                chroma, pos = ((g1, o1), (g2, o2)), pos + _PRIOR_CHROMA.size
            prior = dict(prior_id=pid, prior_q100=pq, prior_shift=(sy, sx), prior_crop=(cy, cx), prior_gain=gain,
                         prior_offset=offset, prior_tiles=tuple(payload[pos:pos + prior_tiles]), prior_planes=chroma)
        h = cls(model_id, width, height, layout & 3, layout >> 2 & 3, depth, q100 // 100, 64 * tw, 64 * th,
                *ids, flags & 1, (major, minor), q100 % 100, planes, layout >> 5 & 1, chroma_q100,
                layer, base_id, base_q100, colour_transform=transform, **prior)
        if mapped:      # its size follows from the geometry: check it before reading the map
            h.validate()
            h._unpack_map(payload, size)
        h.validate()
        return h

    @classmethod
    def unpack(cls, payload: bytes) -> "Header":
        if len(payload) < 2:
            raise FormatError("RHDR segment is too short")
        if payload[0] not in BIT_DEPTHS:
            raise FormatError(f"unsupported .rmc version {payload[0]}.{payload[1]} (this decoder reads "
                              f"{', '.join(f'{major}.x' for major in BIT_DEPTHS)})")
        if payload[0] >= COMPACT:
            return cls._unpack_compact(payload)
        size = _HDR.size + (_PLANES.size if payload[0] >= 3 else 0)
        if len(payload) != size:
            raise FormatError(f"RHDR segment has {len(payload)} bytes, expected {size}")
        (major, minor, model_id, library_id, eref, dref, width, height, cc, oc, depth, quality, tw, th,
         count, flags, last) = _HDR.unpack_from(payload)
        if major == 1 and last:
            raise FormatError("RHDR reserved byte is not zero")
        planes = _PLANES.unpack_from(payload, _HDR.size) if major >= 3 else (0, 0, 0)
        h = cls(model_id, width, height, cc, oc, depth, quality, tw, th, library_id, eref, dref, flags,
                (major, minor), last, *planes)
        h.validate()
        if count != h.tile_count:
            raise FormatError(f"RHDR tile_count {count} does not match the geometry ({h.tile_count})")
        return h

    def _map_checks(self) -> list:
        k = len(self.roi_levels)
        return [
            (self.compact and not self.layer,
             "a quality map is defined for 4.x streams that are not refinement layers"),
            (1 <= k <= MAX_ROI_LEVELS, f"a quality map has 1..{MAX_ROI_LEVELS} levels, not {k}"),
            (all(len(lv) == 2 and 0 <= lv[0] <= 10000 and 0 <= lv[1] <= 10000 and (self.planes or not lv[1])
                 for lv in self.roi_levels), f"quality map levels {self.roi_levels} out of range"),
            (len(self.roi_map) == self.map_size() and all(0 <= v <= k for v in self.roi_map),
             f"quality map has {len(self.roi_map)} entries for {self.map_size()} tiles, or a level above {k}"),
        ]

    def _prior_checks(self) -> list:
        f = 1 << (self.chroma_shift if self.planes else 0)     # planes: whole chroma cells, crop 0 .. 16 f - 1
        return [
            (self.compact and not (self.layer or self.roi_levels),
             "a prior is defined for 4.x streams without a quality map that are not refinement layers"),
            (all(v % f == 0 for v in self.prior_shift) and len(self.prior_planes) == 2 * bool(self.planes)
             and all(1 <= g <= 65535 and -32768 <= o <= 32767 for g, o in self.prior_planes),
             f"prior shift {self.prior_shift} / chroma gains {self.prior_planes} invalid for planes {self.planes}"),
            (len(self.prior_id) == 8 and self.has_prior and 0 <= self.prior_q100 <= 100 * 100,
             f"prior quality {self.prior_q100} invalid"),
            (all(-32768 <= v <= 32767 for v in self.prior_shift) and all(0 <= v < 16 * f for v in self.prior_crop)
             and all(c < side for c, side in zip(self.prior_crop, (self.height, self.width))),
             f"prior shift {self.prior_shift} / crop {self.prior_crop} invalid (crop 0..{16 * f - 1}, less than "
             f"the canvas)"),
            (1 <= self.prior_gain <= 65535 and -32768 <= self.prior_offset <= 32767,
             f"prior gain {self.prior_gain} / offset {self.prior_offset} invalid"),
            (len(self.prior_tiles) == self.tile_count and all(0 <= v <= MAX_PRIOR_STEP + 1 for v in self.prior_tiles),
             f"prior tile flags: {len(self.prior_tiles)} for {self.tile_count} tiles, each 0..{MAX_PRIOR_STEP + 1}"),
        ]

    def validate(self):
        depths = BIT_DEPTHS.get(self.version[0], ())
        checks = [
            (self.version[0] in BIT_DEPTHS, f"version {self.version[0]}.{self.version[1]} is not written here"),
            (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE,
             f"image size {self.width}x{self.height} out of range 1..{MAX_SIDE}"),
            (self.width * self.height <= MAX_PIXELS, f"image {self.width}x{self.height} exceeds {MAX_PIXELS} pixels"),
            (self.coded_channels in (1, 3), f"coded_channels {self.coded_channels} is not 1 or 3"),
            (self.output_channels in (1, 3) and self.output_channels >= self.coded_channels,
             f"output_channels {self.output_channels} invalid for coded_channels {self.coded_channels}"),
            (self.bit_depth in depths, f"bit_depth {self.bit_depth} is not one of "
             f"{', '.join(map(str, depths))} (format {self.version[0]}.x)"),
            (0 <= self.quality <= 100, f"quality {self.quality} out of range 0..100"),
            (self.quality_frac == 0 or (self.version[0] >= 2 and self.quality_frac < 100 and self.quality < 100),
             f"quality_frac {self.quality_frac} invalid for quality {self.quality} (format {self.version[0]}.x)"),
            (all(64 <= t <= 4096 and t % 64 == 0 for t in (self.tile_width, self.tile_height)),
             f"tile size {self.tile_width}x{self.tile_height} is not a multiple of 64 in 64..4096"),
            (self.flags & ~1 == 0, f"unknown flags 0x{self.flags:02x}"),
            (all(len(i) == 8 for i in (self.model_id, self.library_id, self.entropy_ref_id, self.decoder_ref_id)),
             "ids must be 8 bytes"),
            (self.bit_depth == 8 or self.output_channels == 1,
             f"{self.bit_depth}-bit samples are defined for grey images only"),
            (self.planes in (0, 1) and (self.planes == 0 or self.version[0] >= 3),
             f"planes {self.planes} is not 0 or 1 (1 needs format 3.x)"),
            (not self.planes or (self.coded_channels == 3 and self.output_channels == 3 and self.bit_depth == 8),
             "luma/chroma planes are defined for 8-bit RGB images only"),
            (self.chroma_shift in (0, 1) and self.chroma_q100 <= 100 * 100
             and (self.planes or not (self.chroma_shift or self.chroma_q100)),
             f"chroma_shift {self.chroma_shift} / chroma_q100 {self.chroma_q100} invalid"),
            (bool(self.flags & 1) == (self.entropy_ref_id != ZERO_ID),
             "flag 'entropy reference used' disagrees with entropy_ref_id"),
            (self.library_id != ZERO_ID or (self.entropy_ref_id == ZERO_ID and self.decoder_ref_id == ZERO_ID),
             "reference IDs given without a library_id"),
            (0 <= self.layer <= 255 and len(self.base_id) == 8 and 0 <= self.base_q100 <= 100 * 100
             and (self.layer or (self.base_id == ZERO_ID and not self.base_q100)),
             f"refinement layer {self.layer} / base quality {self.base_q100} invalid"),
            (not self.layer or (self.compact and not self.flags & 1),
             "a refinement layer is a 4.x stream without an entropy reference"),
            (not self.colour_transform or (self.planes and self.compact and len(self.colour_transform) == TRANSFORM_BYTES
                                           and self.colour_transform[0] + self.colour_transform[1] <= 256),
             f"colour transform {bytes(self.colour_transform).hex()} invalid (5 bytes, w_r + w_b <= 256, "
             f"luma/chroma planes of a 4.x stream only)"),
        ]
        _refuse_failed(checks)
        # the map's and the prior's checks count tiles: only once the geometry above has passed
        if self.roi_levels or self.roi_map:
            _refuse_failed(self._map_checks())
        if self.has_prior or self.prior_tiles:
            _refuse_failed(self._prior_checks())


def _refuse_failed(checks: list) -> None:
    """[(ok, message)] -> FormatError("RHDR: message") for the first that is not ok."""
    for ok, message in checks:
        if not ok:
            raise FormatError(f"RHDR: {message}")


def _tile_count(width: int, height: int, tw: int, th: int, planes: int, shift: int) -> int:
    """Tiles of a stream of this geometry (Header.tile_count, before a Header exists)."""
    count = lambda w, h: math.ceil(w / tw) * math.ceil(h / th)
    f = 1 << shift
    return count(width, height) + (2 * count(-(-width // f), -(-height // f)) if planes else 0)


def _segment(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def write(header: Header, tiles: dict, metadata: bytes = b"") -> bytes:
    """tiles: {index: (n,) uint32 words} for every index in range(header.tile_count); metadata: the
    payload of an ancillary `meta` segment (bitstream/metadata.py), written after RHDR if not empty."""
    if sorted(tiles) != list(range(header.tile_count)):
        raise ValueError("write() needs exactly one word array per tile")
    parts = [SIGNATURE, _segment(b"RHDR", header.pack())]
    if metadata:
        parts.append(_segment(METADATA, metadata))
    for index in range(header.tile_count):
        words = np.asarray(tiles[index], dtype="<u4")
        head = struct.pack(">I", index) if header.compact else struct.pack(">II", index, len(words))
        parts.append(_segment(b"TILE", head + words.tobytes()))
    if not header.compact:      # 4.x streams end after their last tile
        parts.append(_segment(b"REND", b""))
    return b"".join(parts)


@dataclass
class Parsed:
    header: Header
    tiles: dict = field(default_factory=dict)          # index -> (n,) uint32
    damaged: list = field(default_factory=list)        # (tile index the damaged segment claims, or None, reason)
    metadata: bytes = None                             # payload of the `meta` segment, if one is intact

    def missing(self):
        return [i for i in range(self.header.tile_count) if i not in self.tiles]


def _segment_at(data: bytes, pos: int):
    """-> (kind, payload, crc_ok, next_pos), or None where no well-framed segment starts at pos."""
    if len(data) - pos < 12:
        return None
    (length,) = struct.unpack_from(">I", data, pos)
    kind = data[pos + 4:pos + 8]
    if not all(65 <= b <= 90 or 97 <= b <= 122 for b in kind) or length > MAX_SEGMENT \
            or pos + 12 + length > len(data):
        return None
    payload = data[pos + 8:pos + 8 + length]
    (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
    return kind, payload, crc == zlib.crc32(kind + payload), pos + 12 + length


def _plausible(data: bytes, pos: int, compact: bool) -> bool:
    """Cheap framing checks before paying for a CRC: REND is empty, TILE's length matches its words
    (4.x: an index and whole words)."""
    (length,) = struct.unpack_from(">I", data, pos)
    kind = data[pos + 4:pos + 8]
    if kind == b"REND":
        return length == 0
    if compact:
        return length >= 4 and length % 4 == 0
    if length < 8 or pos + 16 > len(data):
        return False
    (words,) = struct.unpack_from(">I", data, pos + 12)
    return length == 8 + 4 * words


def _resync(data: bytes, start: int, compact: bool):
    """First offset >= start where a TILE or REND segment with a valid CRC begins (damage recovery).

    Candidates must pass _plausible before their CRC is computed, keeping recovery linear-ish."""
    candidates = []
    for tag in (b"TILE", b"REND"):
        i = data.find(tag, start + 4)
        while i != -1:
            if i >= 4 and _plausible(data, i - 4, compact):
                seg = _segment_at(data, i - 4)
                if seg is not None and seg[2]:
                    candidates.append(i - 4)
                    break
            i = data.find(tag, i + 1)
    return min(candidates) if candidates else None


def read(data: bytes) -> Parsed:
    """Parse a whole stream. A damaged header refuses the stream; damage after it (bad CRCs,
    broken framing, truncation) is recorded in `damaged` and parsing resynchronises on the next
    intact segment, so only the tiles hit are lost."""
    if len(data) < len(SIGNATURE) or data[:len(SIGNATURE)] != SIGNATURE:
        raise FormatError("not a REMAC .rmc stream (bad signature)")
    seg = _segment_at(data, len(SIGNATURE))
    if seg is None:
        raise FormatError("stream has no readable RHDR segment (truncated or damaged)")
    kind, payload, crc_ok, pos = seg
    if kind != b"RHDR":
        raise FormatError(f"first segment is {kind!r}, expected RHDR")
    if not crc_ok:
        raise FormatError("RHDR segment fails its CRC (header damaged)")
    parsed = Parsed(Header.unpack(payload))
    compact = parsed.header.compact
    ended = False
    while pos < len(data):
        if ended:
            parsed.damaged.append((None, f"{len(data) - pos} unexpected bytes after REND"))
            break
        seg = _segment_at(data, pos)
        if seg is None:
            nxt = _resync(data, pos + 1, compact)
            if nxt is None and compact and not parsed.missing():
                parsed.damaged.append((None, f"{len(data) - pos} unexpected bytes after the last tile"))
                break
            parsed.damaged.append((None, f"broken segment at byte {pos}" + ("" if nxt else " (stream truncated)")))
            if nxt is None:
                break
            pos = nxt
            continue
        kind, payload, crc_ok, nxt = seg
        if not crc_ok:      # its length may be the damaged field: do not trust it, resynchronise
            parsed.damaged.append((_claimed_tile(parsed.header, kind, payload), f"segment at byte {pos} fails its CRC"))
            nxt = _resync(data, pos + 1, compact)
            if nxt is None:
                break
            pos = nxt
            continue
        if kind == b"TILE":
            _read_tile(parsed, payload, pos)
        elif kind == b"REND":
            if payload:
                parsed.damaged.append((None, f"REND at byte {pos} is not empty"))
            ended = True
        elif kind == b"RHDR":
            raise FormatError(f"second RHDR at byte {pos}")
        elif kind == METADATA and parsed.metadata is None:
            parsed.metadata = payload
        elif kind[0:1].isupper():
            raise FormatError(f"unknown critical segment {kind.decode()} at byte {pos}")
        pos = nxt
    if not ended and not compact:
        parsed.damaged.append((None, "stream truncated before REND"))
    return parsed


def _claimed_tile(header: Header, kind: bytes, payload: bytes):
    """The index a TILE segment that fails its CRC claims (untrusted; for reports), else None."""
    if kind != b"TILE" or len(payload) < 4:
        return None
    (index,) = struct.unpack_from(">I", payload)
    return index if index < header.tile_count else None


def _read_tile(parsed: Parsed, payload: bytes, pos: int):
    head = 4 if parsed.header.compact else 8
    if len(payload) < head:
        parsed.damaged.append((None, f"TILE at byte {pos} is too short"))
        return
    if parsed.header.compact:
        (index,), count = struct.unpack_from(">I", payload), (len(payload) - 4) // 4
    else:
        index, count = struct.unpack_from(">II", payload)
    if index >= parsed.header.tile_count or len(payload) != head + 4 * count:
        parsed.damaged.append((None, f"TILE at byte {pos} has inconsistent index/length"))
    elif index in parsed.tiles:
        raise FormatError(f"tile {index} appears twice (second at byte {pos})")
    else:
        parsed.tiles[index] = np.frombuffer(payload, dtype="<u4", offset=head).astype(np.uint32)
