"""remac-encode and remac-lib: the rover's command line (no torch)."""
import json
import sys
from functools import partial
from pathlib import Path

import click

from remac.bitstream import library as lib
from remac.bitstream.spec import quality_steps
from remac.rover_encoder.cli_support import (STDIO, Command, FloatRange, Group, expand_inputs, given, jobs_option,
                                             plan_outputs, run_batch, version_option)
from remac.bitstream.errors import RemacError
from remac.rover_encoder import pds, roi
from remac.rover_encoder.api import encode_file
from remac.rover_encoder.options import COLOUR_TRANSFORMS, DEFAULT_QUALITY, DEFAULT_TILE, EncodeOptions
from remac.rover_encoder.prepared import check_tile
from remac.rover_encoder.imageio import BIT_DEPTHS

ENCODE_HELP = """Compress IMAGE(s) (PNG, JPEG, TIFF, ..., PDS3/PDS4 products; grey or RGB; 8 to
16 bit) to .rmc.

\b
Runs the rover side of REMAC: a light ONNX analysis transform, reference
selection from the on-board library, integer entropy model, range coder.
The chosen reference is kept only if the stream is smaller with it (--keep-refs
always keeps it; --no-refs never looks); --json reports which were kept.
\b
Examples:
  remac-encode navcam.png                   # -> navcam.rmc beside it, quality 75
  remac-encode navcam.png -q 30 -o low.rmc  # smaller file, lower quality
  remac-encode frames/ -o out/              # every image under frames/, tree mirrored
  remac-encode - -o - < in.png > out.rmc    # stdin to stdout
  remac-encode raw12.png --bit-depth 12     # 12-bit samples (0..4095) in a 16-bit PNG
  remac-encode sol0100/ -o out/             # PDS3 .IMG/.LBL and PDS4 .xml products too
  remac-encode img.png --ref-lib lib/ --json
  remac-encode navcam.png --target-bytes 20000   # best quality in 20000 bytes
  remac-encode frames/ -o out/ -j 2 --json       # 2 processes, JSON per file
  remac-encode img.png -q 20 -o img.q20.rmc      # a preview first ...
  remac-encode img.png --refine img.q20.rmc -q 75 -o img.r.rmc   # ... then only the rest
  remac-encode img.png -q 40 --roi 256,128,200,150 --roi 0,0,64,64:90 --tile 128
  remac-encode again.png --prior first.rmc -o again.rmc   # a re-imaged pointing
  remac-encode frames/ -o out/ --store scenes/   # repeats found and coded given earlier frames
\b
Output: -o FILE (one input), -o DIR (any number; a name ending in / is created),
'-' for stdout; by default IMAGE's name with .rmc beside it. A directory input
is searched recursively for images. Existing files are replaced atomically.
Quality may be fractional (-q 50.5); it is coded in steps of 0.01 (rounded).
\b
Choosing a quality (shipped model, mean bpp / PSNR in dB):
  Navcam grey 256x256   q20 0.045/30.9  q50 0.20/34.6  q80 0.93/41.1  q100 1.72/45.7
  full Navcam frames    q20 0.105/27.6  q50 0.45/32.3  q80 1.65/39.5  q100 2.67/44.2
  Mastcam colour        q20 0.093/25.6  q50 0.60/30.4  q80 2.15/38.3  q100 3.19/42.1
  More qualities: README, "Choosing a quality".
--target-bytes N / --bpp X choose the quality instead: the highest (in steps of
0.01) whose whole file, header included, fits: never over, within 3% under
unless even quality 100 is smaller; a budget below the quality-0 stream fails.
Regions of interest: --roi x,y,w,h[:q] (pixels; repeatable) codes every tile
the region meets at quality q, or without :q at the stream's quality + 25 (at
most 100); a tile met by several takes the highest. One stream; the header's
quality map tells the decoder (remac-info shows it). The granularity is the
tile: a smaller --tile (128, 256) follows the region closer. Under
--target-bytes/--bpp the whole file fits: the search moves the stream's
quality, regions without :q keep their +25 offset, regions with :q their own
quality. A region must lie inside the image; a :q below -q is refused.
Bit depth: --bit-depth, else a PNG's sBIT chunk or a PDS label's bit mask,
else 8 or 16 from the file; samples above the depth's maximum are an error.
Images need both sides of 16 px or more, or to be at most 256 px long: a long
thin one (a 1024x1 row) would be padded to 64 px high and is refused.
Text chunks, EXIF, XMP and a PDS product ID are carried in the stream unless
--strip. PDS products (PDS3 .IMG with attached or .LBL with detached label,
PDS4 .xml label) need the pdr package: pip install 'remac[pds]'.
Re-imaged scenes: --prior EARLIER.rmc codes a frame of the same pointing given
that earlier stream (same model, grey or colour like it; shift up to 32 px
found from block means, brightness fitted); the ground needs EARLIER.rmc. The
stream is never larger than the frame coded alone (then it names no prior).
--store DIR keeps the recent streams (within --store-bytes) and picks the prior
itself where a frame repeats a stored pointing (block detail correlates >= 0.97).
Exit status: 0 all encoded, 1 some input failed (the rest still encoded), 2 usage.
"""


def tile_side(ctx, param, value: int) -> int:
    """--tile's callback: a bad side is a usage error (exit 2), once, not one error per input."""
    try:
        check_tile(value)
    except RemacError as exc:
        raise click.BadParameter(f"{exc}.") from None
    return value


def roi_regions(ctx, param, values) -> tuple:
    """--roi's callback: each x,y,w,h[:q] parsed (a malformed one is a usage error naming it)."""
    out = []
    for value in values:
        try:
            out.append(roi.parse(value))
        except RemacError as exc:
            raise click.BadParameter(f"{exc}.") from None
    return tuple(out)


def is_image_name(path: Path) -> bool:
    """Files a directory input contributes: what Pillow can open, by extension, and PDS products
    (a detached label, not its data file again: rover_encoder.pds.is_product_file)."""
    from PIL import Image
    if path.suffix.lower() in pds.SUFFIXES:
        return pds.is_product_file(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    return fmt is not None and fmt in Image.OPEN


@click.command(cls=Command, help=ENCODE_HELP)
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file, directory, or - for stdout.")
@click.option("-q", "--quality", type=FloatRange(0, 100), default=DEFAULT_QUALITY, show_default=True,
              help="0 (smallest) .. 100 (best); fractional in steps of 0.01. See 'Choosing a quality' above.")
@click.option("--bit-depth", type=click.Choice([str(d) for d in BIT_DEPTHS]),
              help="True sample depth (overrides a PNG's sBIT) [default: sBIT, else 8 or 16].")
@click.option("--strip", is_flag=True, help="Drop metadata (text chunks, EXIF, XMP) instead of carrying it.")
@click.option("--ref-lib", type=click.Path(), help="Reference library directory [default: the shipped one].")
@click.option("--no-refs", is_flag=True, help="Code without references (library not needed to decode).")
@click.option("--keep-refs", is_flag=True,
              help="Keep the chosen references even where coding without them is smaller [default: the "
                   "smaller stream is written].")
@click.option("--tile", type=int, default=DEFAULT_TILE, show_default=True, callback=tile_side,
              help="Tile side, a multiple of 64 in 64..4096.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Threads for the analysis (onnxruntime) and numpy's BLAS.")
@click.option("--encoder", "precision", type=click.Choice(["int8", "float"]),
              help="Rover analysis precision [default: int8 where shipped]. Either decodes the same way.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              help="Run this model directory (a release: model.json, entropy.npz, encoder*.onnx) instead of the "
                   "shipped model; its reference library must be built with it (or --no-refs).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input on stdout.")
@click.option("--quiet", is_flag=True, help="Only errors and warnings.")
@click.option("--target-bytes", type=click.IntRange(1), help="Rate control: at most N bytes per file (instead of -q).")
@click.option("--bpp", type=FloatRange(0, 64, min_open=True),
              help="Rate control: at most X bits per pixel per file, whole file (instead of -q).")
@click.option("--refine", "refine", multiple=True, type=click.Path(dir_okay=False, exists=True), metavar="RMC",
              help="Write a refinement layer: only what the ground lacks, given RMC (an earlier stream of this "
                   "image), to reach quality -q. Repeat for a chain: the base first, then its layers in order.")
@click.option("--roi", "rois", multiple=True, metavar="X,Y,W,H[:Q]", callback=roi_regions,
              help="A region of interest (pixels from the top left), coded at quality Q [default: the stream's "
                   "quality + 25, at most 100], tile by tile. Repeatable. See 'Regions of interest' above.")
@click.option("--colour-transform", "colour_transform", type=click.Choice(list(COLOUR_TRANSFORMS)),
              default="adaptive", show_default=True,
              help="Colour images: 'adaptive' codes luma along the image's own texture colour axis and chroma "
                   "along the other two (5 header bytes; smaller streams under any white balance), 'bt601' the "
                   "fixed JPEG YCbCr.")
@click.option("--prior", "priors", multiple=True, type=click.Path(dir_okay=False, exists=True), metavar="RMC",
              help="Code the frame given RMC, an earlier stream of the same pointing (a re-imaged scene). "
                   "Repeat to add streams RMC was itself coded given.")
@click.option("--store", "store", type=click.Path(file_okay=False), metavar="DIR",
              help="A scene store: each frame is tested against the recent streams kept in DIR and, where it "
                   "repeats one's pointing, coded given it (as --prior); every frame coded is then kept.")
@click.option("--store-bytes", "store_bytes", type=click.IntRange(1), metavar="N",
              help="Bound of the scene store in bytes (oldest streams go first) [default: 8 MiB].")
@jobs_option("images")
@version_option("remac-encode")
def encode_main(images, output, quality, bit_depth, strip, ref_lib, no_refs, keep_refs, tile, threads, precision, model_dir,
                as_json, quiet, target_bytes, bpp, refine, rois, colour_transform, priors, store, store_bytes,
                workers):
    if target_bytes is not None and bpp is not None:
        raise click.UsageError("give --target-bytes or --bpp, not both")
    if no_refs and keep_refs:
        raise click.UsageError("--no-refs and --keep-refs exclude each other")
    if (target_bytes is not None or bpp is not None) and given("quality"):
        raise click.UsageError("-q and --target-bytes/--bpp exclude each other (rate control picks the quality)")
    if refine and (target_bytes is not None or bpp is not None):
        raise click.UsageError("--refine codes a layer at a quality (-q), not to --target-bytes/--bpp")
    if priors and (refine or rois or target_bytes is not None or bpp is not None):
        raise click.UsageError("--prior codes a frame at a quality (-q), without --refine, --roi, --target-bytes, --bpp")
    if store and (priors or refine or workers > 1):
        raise click.UsageError("--store picks priors itself, one frame after another: not with --prior, --refine or -j")
    if refine and rois:
        raise click.UsageError("--roi cannot be coded in a refinement layer (--refine)")
    try:
        roi.check(rois, None if target_bytes is not None or bpp is not None else quality_steps(quality))
    except RemacError as exc:
        raise click.UsageError(str(exc)) from None
    jobs = plan_outputs("remac-encode", list(images), output, ".rmc", as_json, is_image_name, "image files")
    if refine and len(jobs) != 1:
        raise click.UsageError("--refine takes exactly one image (the one its streams code)")
    try:
        opts = EncodeOptions(quality_steps(quality), target_bytes, bpp, None if no_refs else lib.load(ref_lib),
                             keep_refs, tile=tile, threads=threads, precision=precision, model=model_dir,
                             bit_depth=bit_depth and int(bit_depth), strip=strip, refine=refine, roi=rois,
                             colour_transform=COLOUR_TRANSFORMS[colour_transform], prior=priors, store=store,
                             store_bytes=store_bytes)
    except RemacError as exc:
        click.echo(f"remac-encode: error: {exc}", err=True)
        sys.exit(1)
    quiet = quiet or output == STDIO
    run_batch("remac-encode", jobs, partial(encode_file, opts=opts), as_json, quiet, workers)


@click.group(cls=Group)
@version_option("remac-lib")
def lib_main():
    """Build and inspect REMAC reference libraries.

    \b
    remac-lib build refs/*.png -o lib/        # make a library from past images
    remac-lib info lib/                       # what is in it
    remac-lib export-rover lib/ -o rover_lib/ # drop what the rover does not need

    Exit status: 0 done, 1 error (one line on stderr), 2 usage.
    """


def _fail(exc):
    click.echo(f"remac-lib: error: {exc}", err=True)
    sys.exit(1)


def _library_image(path: Path) -> bool:
    """Files a directory given to remac-lib build contributes: images Pillow reads (no PDS products)."""
    return path.suffix.lower() not in pds.SUFFIXES and is_image_name(path)


@lib_main.command("build")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(), help="Library directory to create.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
def lib_build(images, output, threads):
    """Build a library from IMAGES and directories of them (searched recursively; grey and colour
    may be mixed). Below 16 images it warns that the library is small (the shipped one holds 96
    frames): remac-encode keeps a reference only where the stream is smaller with it."""
    from remac.rover_encoder.library_build import build
    found = expand_inputs(images, _library_image, "image files")
    for _, problem in found:
        if isinstance(problem, RemacError):
            _fail(problem)
    paths = [inp for inp, _ in found]
    try:
        library_id = build(paths, Path(output), threads)
    except RemacError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(RemacError(f"{output}: cannot write the library ({exc.strerror or exc})"))
    click.echo(f"library {library_id}: {len(paths)} images -> {output}")
    if len(paths) < lib.SMALL:
        click.echo(f"remac-lib: warning: {output}: a library of {len(paths)} images is small (the shipped one holds "
                   f"96); with fewer than {lib.SMALL}, remac-encode may rarely find a reference worth keeping",
                   err=True)


def _kind(entry: dict) -> str:
    return "colour" if entry.get("channels") == 3 else "grey"


@lib_main.command("info")
@click.argument("directory", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object, entries included.")
def lib_info(directory, as_json):
    """Show a library's ID, models and entries (a colour entry serves colour streams' luma plane)."""
    try:
        library = lib.load(directory)
    except RemacError as exc:
        _fail(exc)
    entries = sorted(library.entries.values(), key=lambda e: (e.get("name", ""), e["id"]))
    kinds = {k: sum(_kind(e) == k for e in entries) for k in ("grey", "colour")}
    if as_json:
        click.echo(json.dumps({"library_id": library.library_id, "models": library.models,
                               "rover_export": library.rover_export, "entries": entries, "by_kind": kinds,
                               "by_modality": {m: len(library.ids_for(m)) for m in sorted(library.models)}}, indent=1))
        return
    click.echo(f"library   {library.library_id}" + (" (rover export: no reference images)" if library.rover_export else ""))
    for name, model_id in sorted(library.models.items()):
        click.echo(f"model     {model_id} ({name})")
    click.echo(f"entries   {len(entries)}: {kinds['grey']} grey, {kinds['colour']} colour")
    click.echo(f"  {'id':16s}  {'kind':6s}  {'size':>11s}  name")
    for e in entries:
        click.echo(f"  {e['id']:16s}  {_kind(e):6s}  {'%dx%d' % (e['width'], e['height']):>11s}  {e.get('name', '')}")


@lib_main.command("export-rover")
@click.argument("directory", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path())
def lib_export_rover(directory, output):
    """Copy a library without its reference images (what the rover needs)."""
    from remac.rover_encoder.library_build import export_rover
    try:
        library_id = export_rover(Path(directory), Path(output))
    except RemacError as exc:
        _fail(exc)
    click.echo(f"library {library_id} (rover export) -> {output}")
