"""remac-decode: the ground station's command line."""
import io
import sys

import click
from PIL import Image

from bitstream import library as lib
from bitstream.cli_support import STDIO, atomic_write, plan_outputs, read_input, run_batch, version_text
from bitstream.container import SIGNATURE
from bitstream.errors import RemacError

DECODE_HELP = """Reconstruct images from .rmc FILE(s) with the ground ref-decoder.

\b
Examples:
  remac-decode navcam.rmc                    # -> navcam.dec.png beside it
  remac-decode navcam.rmc -o navcam.out.png  # choose the name (format from extension)
  remac-decode sol1234/*.rmc -o decoded/     # batch into a directory
  remac-decode - -o - < in.rmc > out.png     # stdin to stdout (PNG)
\b
The stream names its reference library and references; --ref-lib must be that
library (default: the shipped one). Damaged tiles are filled flat and reported
on stderr; --strict refuses such a stream instead.
Exit status: 0 all decoded, 1 some input failed (the rest still decoded), 2 usage.
"""


def _decoder_version(name: str) -> str:
    from models import ground
    return f", decoder version {ground.load(name).decoder_version}"


def encode_image_bytes(image, fmt: str) -> bytes:
    buf = io.BytesIO()
    try:
        Image.fromarray(image).save(buf, format=fmt)      # uint8 -> L / RGB, uint16 (H,W) -> I;16
    except (KeyError, OSError, ValueError, TypeError) as exc:
        raise RemacError(f"cannot write a {image.dtype} image as {fmt} ({exc})") from None
    return buf.getvalue()


def _format_for(path: str) -> str:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else "png"
    fmt = Image.registered_extensions().get("." + ext)
    if path == STDIO or fmt is None:
        return "PNG"
    return fmt


def _decode_one(inp, out, library, strict, threads):
    from ground_decoder.decode import decode
    data = read_input(inp)
    if not data.startswith(SIGNATURE):
        kind = "an image" if data[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1") else "not a .rmc stream"
        raise RemacError(f"{inp}: {kind} (remac-decode reads .rmc streams; use remac-encode for images)")
    try:
        result = decode(data, library, strict, threads)
    except RemacError as exc:
        raise RemacError(f"{inp}: {exc}") from None
    atomic_write(out, encode_image_bytes(result.image, _format_for(out)))
    h = result.header
    return {"output": out, "width": h.width, "height": h.height, "channels": h.output_channels,
            "bit_depth": h.bit_depth, "quality": h.quality, "lost_tiles": result.lost_tiles,
            "warnings": [f"{inp}: {w}" for w in result.warnings], "summary": f"{inp} -> {out}"}


@click.command(help=DECODE_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", help="Output image, directory, or - for stdout (PNG).")
@click.option("--ref-lib", type=click.Path(), help="Reference library directory [default: the shipped one].")
@click.option("--strict", is_flag=True, help="Refuse damaged streams instead of concealing lost tiles.")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input on stdout.")
@click.option("--quiet", is_flag=True, help="Only errors and warnings.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, help="Show versions, model IDs, decoders.",
              callback=lambda ctx, _, v: v and (click.echo(version_text("remac-decode", _decoder_version)), ctx.exit()))
def decode_main(files, output, ref_lib, strict, threads, as_json, quiet):
    jobs = plan_outputs("remac-decode", list(files), output, ".dec.png", as_json)
    library = None
    if ref_lib is not None:
        try:
            library = lib.load(ref_lib)
        except RemacError as exc:
            click.echo(f"remac-decode: error: {exc}", err=True)
            sys.exit(1)
    run_batch("remac-decode", jobs, lambda inp, out: _decode_one(inp, out, library, strict, threads),
              as_json, quiet or output == STDIO)
