"""remac-encode and remac-lib: the rover's command line (no torch)."""
import json
import sys
from pathlib import Path

import click

from bitstream import library as lib
from bitstream.cli_support import STDIO, atomic_write, plan_outputs, read_input, run_batch, version_text
from bitstream.container import SIGNATURE
from bitstream.errors import RemacError
from rover_encoder.encode import DEFAULT_QUALITY, DEFAULT_TILE, encode
from rover_encoder.imageio import load_image

ENCODE_HELP = """Compress IMAGE(s) (PNG, JPEG, TIFF, ...; grey or RGB; 8 or 16 bit) to .rmc.

\b
Runs the rover side of REMAC: a light ONNX analysis transform, reference
selection from the on-board library, integer entropy model, range coder.
\b
Examples:
  remac-encode navcam.png                   # -> navcam.rmc beside it, quality 75
  remac-encode navcam.png -q 30 -o low.rmc  # smaller file, lower quality
  remac-encode frames/*.png -o out/         # batch into a directory
  remac-encode - -o - < in.png > out.rmc    # stdin to stdout
  remac-encode img.png --ref-lib lib/ --json
\b
Output: -o FILE (one input), -o DIR (any number), '-' for stdout; by default
IMAGE's name with .rmc beside it. Existing files are replaced atomically.
Exit status: 0 all encoded, 1 some input failed (the rest still encoded), 2 usage.
"""


def _encode_one(inp, out, quality, library, use_refs, tile, threads, precision):
    data = read_input(inp)
    if data.startswith(SIGNATURE):
        raise RemacError(f"{inp}: is already a .rmc stream (use remac-decode)")
    img = load_image(data, name=inp)
    result = encode(img, quality, library, use_refs, tile, threads, precision=precision)
    atomic_write(out, result.data)
    h = result.header
    return {"output": out, "bytes": len(result.data), "bpp": round(result.bpp, 4), "width": h.width,
            "height": h.height, "channels": h.output_channels, "quality": quality,
            "entropy_ref": result.entropy_ref, "decoder_ref": result.decoder_ref, "encoder": result.precision,
            "warnings": img.warnings,
            "summary": f"{inp} -> {out}: {len(result.data)} bytes, {result.bpp:.3f} bpp"}


@click.command(help=ENCODE_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file, directory, or - for stdout.")
@click.option("-q", "--quality", type=click.IntRange(0, 100), default=DEFAULT_QUALITY, show_default=True,
              help="0 (smallest) .. 100 (best).")
@click.option("--ref-lib", type=click.Path(), help="Reference library directory [default: the shipped one].")
@click.option("--no-refs", is_flag=True, help="Code without references (library not needed to decode).")
@click.option("--tile", type=int, default=DEFAULT_TILE, show_default=True, help="Tile side, multiple of 64.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--encoder", "precision", type=click.Choice(["int8", "float"]),
              help="Rover analysis precision [default: int8 where shipped]. Either decodes the same way.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input on stdout.")
@click.option("--quiet", is_flag=True, help="Only errors and warnings.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, help="Show versions and model IDs.",
              callback=lambda ctx, _, v: v and (click.echo(version_text("remac-encode")), ctx.exit()))
def encode_main(images, output, quality, ref_lib, no_refs, tile, threads, precision, as_json, quiet):
    jobs = plan_outputs("remac-encode", list(images), output, ".rmc", as_json)
    library = None
    if not no_refs:
        try:
            library = lib.load(ref_lib)
        except RemacError as exc:
            click.echo(f"remac-encode: error: {exc}", err=True)
            sys.exit(1)
    quiet = quiet or output == STDIO
    run_batch("remac-encode", jobs,
              lambda inp, out: _encode_one(inp, out, quality, library, not no_refs, tile, threads, precision),
              as_json, quiet)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lib_main():
    """Build and inspect REMAC reference libraries.

    \b
    remac-lib build refs/*.png -o lib/        # make a library from past images
    remac-lib info lib/                       # what is in it
    remac-lib export-rover lib/ -o rover_lib/ # drop what the rover does not need
    """


def _fail(exc):
    click.echo(f"remac-lib: error: {exc}", err=True)
    sys.exit(1)


@lib_main.command("build")
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(), help="Library directory to create.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
def lib_build(images, output, threads):
    """Build a library from IMAGES (grey and colour may be mixed)."""
    from rover_encoder.library_build import build
    try:
        library_id = build(images, Path(output), threads)
    except RemacError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(RemacError(f"{output}: cannot write the library ({exc.strerror or exc})"))
    click.echo(f"library {library_id}: {len(images)} images -> {output}")


@lib_main.command("info")
@click.argument("directory", type=click.Path())
@click.option("--json", "as_json", is_flag=True)
def lib_info(directory, as_json):
    """Show a library's ID, models and entries."""
    try:
        library = lib.load(directory)
    except RemacError as exc:
        _fail(exc)
    summary = {"library_id": library.library_id, "models": library.models, "rover_export": library.rover_export,
               "entries": len(library.entries),
               "by_modality": {m: len(library.ids_for(m)) for m in sorted(library.models)}}
    if as_json:
        click.echo(json.dumps({**summary, "entries": list(library.entries.values())}, indent=1))
        return
    for k, v in summary.items():
        click.echo(f"{k:13s} {v}")


@lib_main.command("export-rover")
@click.argument("directory", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path())
def lib_export_rover(directory, output):
    """Copy a library without its reference images (what the rover needs)."""
    from rover_encoder.library_build import export_rover
    try:
        library_id = export_rover(Path(directory), Path(output))
    except RemacError as exc:
        _fail(exc)
    click.echo(f"library {library_id} (rover export) -> {output}")
