"""remac-info: what a .rmc stream holds, read from its bytes alone (no decoder, no torch)."""
import json

import click

from remac.bitstream import colour, container, metadata, refine
from remac.rover_encoder import roi
from remac.rover_encoder.cli_support import Command, expand_inputs, read_input, run_batch, version_option
from remac.bitstream.errors import FormatError, RemacError
from remac.bitstream.modelfile import ASSETS, SHIPPED

INFO_HELP = """Show what .rmc FILE(s) hold: format version, model, reference library and
references, geometry, bit depth, quality, metadata (the PDS product ID of an
archive image), and every tile's size and CRC.

\b
Nothing is decoded: the stream's structure is read and its CRCs checked.
\b
Examples:
  remac-info navcam.rmc
  remac-info sol1234/ --json            # every .rmc under sol1234/, one JSON object each
\b
Exit status: 0 all intact; 1 some input unreadable (not .rmc, header damaged,
missing); 2 usage; 3 some stream damaged (tiles failing their CRC or missing,
or other damage), the rest of its report still shown.
"""


def _shipped_models() -> dict:
    """{model_id hex: name} from the shipped model.json files (cheap: no tables are loaded)."""
    out = {}
    for name in SHIPPED:
        try:
            out[json.loads((ASSETS / name / "model.json").read_text())["model_id"]] = name
        except (OSError, ValueError, KeyError):
            pass
    return out


def _default_library_id():
    from remac.bitstream.library import DEFAULT
    try:
        return json.loads((DEFAULT / "library.json").read_text())["library_id"]
    except (OSError, ValueError, KeyError):
        return None


PLANE_NAMES = {False: ("Y", "Cb", "Cr"), True: ("Y", "C1", "C2")}    # by: the stream has its own colour transform


def describe(data: bytes) -> dict:
    """Everything remac-info reports about one stream, as plain data. Raises FormatError where the
    stream cannot be read at all (signature, header)."""
    parsed = container.read(data)
    h = parsed.header
    claimed = {index for index, _ in parsed.damaged if index is not None}
    tiles = []
    names = PLANE_NAMES[bool(h.colour_transform)] if h.planes else (None,)
    for name, (plane, offset) in zip(names, h.coded_planes()):
        for local in range(plane.tile_count):
            top, left, th, tw = plane.tile_box(local)
            tiles.append({"index": offset + local, "x": left, "y": top, "width": tw, "height": th,
                          **({"plane": name} if name else {}),
                          **({"quality": plane.tile_q100(local) / 100} if h.roi_levels else {})})
    for entry in tiles:
        i = entry["index"]
        if i in parsed.tiles:
            entry.update(bytes=12 + (4 if h.compact else 8) + 4 * len(parsed.tiles[i]), status="ok")
        else:
            entry.update(bytes=None, status="CRC error" if i in claimed else "missing")
    meta, meta_problem = None, None
    if parsed.metadata is not None:
        try:
            meta = metadata.unpack(parsed.metadata)
        except FormatError as exc:
            meta_problem = str(exc)
    ids = {"library": h.library_id, "entropy_ref": h.entropy_ref_id, "decoder_ref": h.decoder_ref_id}
    damage = [reason for _, reason in parsed.damaged]
    return {
        "version": "%d.%d" % h.version, "bytes": len(data),
        "model_id": h.model_id.hex(), "model": _shipped_models().get(h.model_id.hex()),
        **{f"{k}_id": (v.hex() if v != container.ZERO_ID else None) for k, v in ids.items()},
        "default_library": h.library_id.hex() == _default_library_id(),
        "width": h.width, "height": h.height, "coded_channels": h.coded_channels,
        "output_channels": h.output_channels, "bit_depth": h.bit_depth, "quality": h.quality_value,
        "planes": None if not h.planes else {"chroma_shift": h.chroma_shift, "chroma_quality": h.chroma_q100 / 100,
                                             **colour_transform(h.colour_transform)},
        "stream_id": refine.stream_id(data).hex(),
        "refines": None if not h.layer else {"layer": h.layer, "base_id": h.base_id.hex(),
                                             "base_quality": h.base_q100 / 100},
        "prior": None if not h.has_prior else {
            "id": h.prior_id.hex(), "quality": h.prior_q100 / 100, "shift_cells": list(h.prior_shift),
            "crop": list(h.prior_crop), "shift_px": [16 * s + c for s, c in zip(h.prior_shift, h.prior_crop)],
            "gain": h.prior_gain / container.PRIOR_GAIN_ONE, "offset": h.prior_offset / 16,
            "tiles_predicted": sum(1 for t in h.prior_tiles if t), "tile_steps": list(h.prior_tiles)},
        "roi": roi.summary(h),
        "bpp": round(8 * len(data) / (h.image_size[0] * h.image_size[1]), 4),
        "tile_width": h.tile_width, "tile_height": h.tile_height, "tiles_x": h.tiles_x, "tiles_y": h.tiles_y,
        "tiles": tiles,
        "metadata": None if meta is None else {"summary": meta.describe(), "text": meta.text},
        "product_id": None if meta is None else meta.product_id,
        "metadata_problem": meta_problem,
        "damage": damage,
        "intact": not damage and all(t["status"] == "ok" for t in tiles),
    }


def colour_transform(code: bytes) -> dict:
    """A planar stream's colour transform for people and JSON: "bt601" or the 5 bytes in hex, and
    the luma plane's R, G, B weights."""
    return {"transform": code.hex() if code else "bt601",
            "luma_weights": [round(float(w), 4) for w in colour.transform_matrix(code)[0][0]]}


def human(name: str, d: dict) -> str:
    """jxlinfo-style text: a summary line, then one field a line, then the tiles."""
    kind = "grey" if d["output_channels"] == 1 else ("grey as RGB" if d["coded_channels"] == 1 else "RGB")
    lines = [f"{name}: REMAC .rmc {d['version']}, {d['width']}x{d['height']} {kind}, {d['bit_depth']}-bit, "
             f"quality {d['quality']}, {d['bytes']} bytes ({d['bpp']} bpp)"]
    field = lambda k, v: lines.append(f"  {k:<12s}{v}")
    field("model", d["model_id"] + (f" ({d['model']})" if d["model"] else " (not shipped with this installation)"))
    field("library", (d["library_id"] + (" (the shipped default)" if d["default_library"] else ""))
          if d["library_id"] else "none (no references)")
    if d["library_id"]:
        field("entropy ref", d["entropy_ref_id"] or "none")
        field("decoder ref", d["decoder_ref_id"] or "none")
    if d["product_id"]:
        field("product", f"{d['product_id']} (PDS)")
    if d["metadata"] is not None and (d["metadata"]["summary"] or not d["product_id"]):
        field("metadata", "; ".join(d["metadata"]["summary"]) or "empty")
    if d["metadata_problem"]:
        field("metadata", f"unreadable ({d['metadata_problem']})")
    field("stream id", d["stream_id"])
    if d["refines"]:
        r = d["refines"]
        field("refines", f"layer {r['layer']} on stream {r['base_id']} (quality {r['base_quality']:g}): "
                         f"decodes only with it")
    if d["prior"]:
        p = d["prior"]
        field("prior", f"coded given stream {p['id']} (quality {p['quality']:g}): decodes only with it; shift "
                       f"{p['shift_px'][0]:+d},{p['shift_px'][1]:+d} px, gain {p['gain']:.3f}, "
                       f"{p['tiles_predicted']} of {len(p['tile_steps'])} tiles predicted; the image is the "
                       f"{d['width']}x{d['height']} canvas less its first {p['crop'][0]} rows, {p['crop'][1]} columns")
    if d["planes"]:
        shift, cq = d["planes"]["chroma_shift"], d["planes"]["chroma_quality"]
        names = ", ".join(PLANE_NAMES[d["planes"]["transform"] != "bt601"])
        field("planes", f"{names} (chroma {'at 1/%d size' % (1 << shift) if shift else 'full size'}, quality {cq:g})")
        field("colour", "BT.601 YCbCr" if d["planes"]["transform"] == "bt601" else
              f"the image's own ({d['planes']['transform']}): luma = "
              + " ".join(f"{w:.3f} {c}" for w, c in zip(d["planes"]["luma_weights"], "RGB")))
    if d["roi"]:
        levels = ", ".join(f"{lv['level']} = quality {lv['quality']:g}"
                           + (f" (chroma {lv['chroma_quality']:g})" if "chroma_quality" in lv else "")
                           + f", {lv['tiles']} tile{'s' if lv['tiles'] != 1 else ''}" for lv in d["roi"]["levels"])
        field("roi", f"quality map per tile ('.' = quality {d['quality']}): {levels}")
        for row in roi.map_lines(d["roi"]):
            lines.append(f"    {row}")
    good = [t for t in d["tiles"] if t["status"] == "ok"]
    field("tiles", f"{len(d['tiles'])} of {d['tile_width']}x{d['tile_height']} ({d['tiles_x']}x{d['tiles_y']}), "
                   f"{len(good)} intact, {sum(t['bytes'] for t in good)} bytes")
    for t in d["tiles"]:
        size = f"{t['bytes']} bytes" if t["bytes"] is not None else "-"
        where = f"{t['plane']:<2s} " if "plane" in t else ""
        quality = f"  q {t['quality']:g}" if "quality" in t else ""
        lines.append(f"    tile {t['index']:<5d} {where}at {t['x']},{t['y']} {t['width']}x{t['height']}  {size:>12s}  "
                     + ("CRC ok" if t["status"] == "ok" else t["status"].upper()) + quality)
    for reason in d["damage"]:
        field("damage", reason)
    return "\n".join(lines)


def _info_one(inp: str) -> dict:
    data = read_input(inp)
    try:
        d = describe(data)
    except FormatError as exc:
        raise RemacError(f"{inp}: {exc}") from None
    return {**d, "damaged": not d["intact"], "report": human(inp, d)}


@click.command(cls=Command, help=INFO_HELP)
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@version_option("remac-info")
def main(files, as_json):
    found = expand_inputs(list(files), lambda p: p.suffix.lower() == ".rmc", ".rmc files")
    jobs = [(inp, sub if isinstance(sub, RemacError) else None) for inp, sub in found]     # info writes nothing
    run_batch("remac-info", jobs, lambda inp, _: _info_one(inp), as_json, quiet=True)
