"""Regions of interest: parts of the image coded at a higher quality than the rest, in one stream.

    --roi x,y,w,h[:q]  -->  Region (pixels, q100 or None)
    per tile: quality = max(stream quality, quality of every region the tile meets)
              (a region without q: stream quality + ROI_BOOST, at most 100, tracking the stream's
              quality under rate control; with q: that quality, fixed)
    --> the header's quality map (bitstream.container.Header.roi_levels / roi_map;
        docs/FORMAT.md, "Quality map"): level 0 = the stream's quality, levels 1..K the others

The granularity is the tile: each tile is coded exactly as a stream at its quality would code it
(gain, hyper-latent, scale-index floors, spatial context, reference statistics at that quality), so
the integer entropy path is the one of a plain stream, tile by tile. Smaller tiles (--tile 128)
follow a region more closely, at some rate cost for the whole image.
"""
import re
from dataclasses import dataclass

from remac.bitstream import spec
from remac.bitstream.container import MAX_ROI_LEVELS
from remac.bitstream.errors import RemacError

ROI_BOOST = 2500        # a region without its own quality: the stream's quality + 25, at most 100
_SPEC = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?::\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*)?$")


@dataclass(frozen=True)
class Region:
    """x, y: top-left pixel; width, height: pixels (>= 1); q100: the region's quality in hundredths,
    None: the stream's + ROI_BOOST."""
    x: int
    y: int
    width: int
    height: int
    q100: int = None

    def __str__(self):
        return f"{self.x},{self.y},{self.width},{self.height}" + ("" if self.q100 is None else f":{self.q100 / 100:g}")

    def quality_at(self, q100: int) -> int:
        """This region's quality (hundredths) in a stream at quality q100."""
        return min(q100 + ROI_BOOST, 100 * spec.QUALITY_STEPS) if self.q100 is None else self.q100

    def meets(self, top: int, left: int, height: int, width: int, shift: int = 0) -> bool:
        """Whether the region overlaps a box (top, left, height, width) of a plane at 1/2**shift of
        the image's size (the region scaled down, outward)."""
        x0, y0 = self.x >> shift, self.y >> shift
        x1, y1 = -(-(self.x + self.width) >> shift), -(-(self.y + self.height) >> shift)
        return x0 < left + width and left < x1 and y0 < top + height and top < y1


def parse(text: str) -> Region:
    """'x,y,w,h' or 'x,y,w,h:q' (q 0..100, steps of 0.01) -> Region; RemacError naming the problem."""
    m = _SPEC.match(str(text))
    if not m:
        raise RemacError(f"'{text}' is not x,y,w,h or x,y,w,h:q (pixels, whole numbers; q 0..100)")
    x, y, w, h = (int(v) for v in m.groups()[:4])
    if w < 1 or h < 1:
        raise RemacError(f"'{text}': width and height must be at least 1 pixel")
    q100 = None
    if m.group(5) is not None:
        q = float(m.group(5))
        if not 0 <= q <= 100:
            raise RemacError(f"'{text}': quality {m.group(5)} is out of range 0..100")
        q100 = spec.quality_steps(q)
    return Region(x, y, w, h, q100)


def regions(values) -> tuple:
    """Regions from strings ('x,y,w,h[:q]'), Regions or (x, y, w, h[, quality]) tuples -> (Region, ...)."""
    out = []
    for v in values:
        if isinstance(v, Region):
            out.append(v)
        elif isinstance(v, str):
            out.append(parse(v))
        else:
            v = tuple(v)
            if len(v) not in (4, 5):
                raise RemacError(f"region {v}: expected (x, y, w, h) or (x, y, w, h, quality)")
            text = ",".join(str(int(a)) for a in v[:4]) + (f":{v[4]}" if len(v) == 5 and v[4] is not None else "")
            out.append(parse(text))
    return tuple(out)


def check(rois: tuple, q100: int = None) -> None:
    """What can be checked before an image is seen: at most MAX_ROI_LEVELS distinct qualities; a
    region's own quality not below the stream's fixed quality q100 (None: rate control picks it)."""
    levels = {r.q100 for r in rois}
    if len(levels) > MAX_ROI_LEVELS:
        raise RemacError(f"--roi: at most {MAX_ROI_LEVELS} distinct region qualities (a default one counts as one), "
                         f"{len(levels)} given")
    for r in rois:
        if q100 is not None and r.q100 is not None and r.q100 < q100:
            raise RemacError(f"--roi {r}: quality {r.q100 / 100:g} is below the stream's {q100 / 100:g} "
                             f"(a region is coded at the higher of the two)")


def check_inside(rois: tuple, width: int, height: int) -> None:
    """Every region must lie inside the width x height image (RemacError naming it)."""
    for r in rois:
        if r.x + r.width > width or r.y + r.height > height:
            raise RemacError(f"--roi {r} lies outside the {width}x{height} image")


def tile_qualities(header, rois: tuple, q100: int, shift: int = 0) -> list:
    """Quality (hundredths) of every tile of a one-plane header's grid, for a stream at q100: the
    highest of q100 and the qualities of the regions the tile meets (shift: the plane is the image
    at 1/2**shift, a chroma plane; its tiles take the luma quality, which the caller maps)."""
    out = []
    for index in range(header.tiles_x * header.tiles_y):
        box = header.tile_box(index)
        out.append(max([q100] + [r.quality_at(q100) for r in rois if r.meets(*box, shift)]))
    return out


def quality_map(q100: int, tiles: list, chroma=None) -> tuple:
    """-> (roi_levels, roi_map) of a header (both empty when every tile is at q100): tiles: the Y
    (or only) plane's tile qualities; chroma: (the chroma grid's tiles' luma qualities, q -> chroma
    quality) for a planar stream. Levels are the qualities above q100, ascending."""
    every = list(tiles) + (list(chroma[0]) if chroma else [])
    above = sorted({q for q in every if q > q100})
    if not above:
        return (), ()
    level = {q: j + 1 for j, q in enumerate(above)}
    levels = tuple((q, chroma[1](q) if chroma else 0) for q in above)
    return levels, tuple(level.get(q, 0) for q in every)


def summary(header) -> dict:
    """A stream header's quality map for reports, None without one: {"levels": [{"level", "quality",
    "chroma_quality" (planes), "tiles": Y (or only) plane tiles at it}], "map": rows of that plane's
    tile grid, level per tile, "chroma_map": the chroma grid's rows (planes, Cb and Cr alike)}; level
    0 is the stream's own quality."""
    if not header.roi_levels:
        return None
    grids, start = [], 0
    for k in ((0, 1) if header.planes else (0,)):
        across, down = header.plane_geometry(k)
        grids.append([list(header.roi_map[start + r * across:start + (r + 1) * across]) for r in range(down)])
        start += across * down
    levels = [{"level": j + 1, "quality": q / 100, **({"chroma_quality": c / 100} if header.planes else {}),
               "tiles": sum(row.count(j + 1) for row in grids[0])} for j, (q, c) in enumerate(header.roi_levels)]
    return {"levels": levels, "map": grids[0], **({"chroma_map": grids[1]} if header.planes else {})}


def map_lines(d: dict) -> list:
    """summary() as text rows: '.' a tile at the stream's quality, 1..9, A..F a level; a planar
    stream's chroma grid beside the Y grid."""
    text = lambda grid: ["".join("." if not v else "0123456789ABCDEF"[v] for v in row) for row in grid]
    rows = text(d["map"])
    if "chroma_map" not in d:
        return rows
    chroma = text(d["chroma_map"])
    width = max(len(r) for r in rows)
    rows = [f"{'Y':<{width}s}   Cb/Cr"] + rows
    chroma = [""] + chroma
    return [f"{a:<{width}s}   {b}".rstrip() for a, b in zip(rows + [""] * (len(chroma) - len(rows)),
                                                           chroma + [""] * (len(rows) - len(chroma)))]
