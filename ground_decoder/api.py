"""Decoding from Python, for pipelines that do not shell out; remac-decode runs these too.

    from remac import ground_decoder
    image = ground_decoder.decode_image(data)               # .rmc bytes -> (H,W) / (H,W,3) uint8|uint16
    info = ground_decoder.decode_file("navcam.rmc", "out/navcam.png")

(`ground_decoder.decode` is the module of the decoder itself, so the package names the bytes
function decode_image; here it is `decode`.) Errors are RemacError with a one-line reason; a
damaged stream is concealed (lost tiles filled flat) unless strict=True, and decode_file reports it.
"""
import numpy as np

from remac.bitstream import container, library as lib, metadata
from remac.rover_encoder.cli_support import atomic_write, input_name, output_for, read_input
from remac.bitstream.container import SIGNATURE
from remac.bitstream.errors import FormatError, RemacError
from remac.bitstream.library import Library
from remac.ground_decoder.output import check_channels, check_lossless, image_bytes


def _library(library):
    """None: whatever the stream names, from the shipped library; a Library; or a directory."""
    return library if library is None or isinstance(library, Library) else lib.load(library)


def decode(data: bytes, library=None, strict: bool = False, threads: int = 2, reduce: int = 0, models=(),
           priors=()) -> np.ndarray:
    """.rmc bytes -> decoded samples (H,W) or (H,W,3), uint8 (8-bit streams) or uint16. threads:
    synthesis workers (same pixels for any number); reduce 1..3: a 1/2, 1/4, 1/8 preview; models:
    extra model stores (directories) for streams of releases this installation does not ship; priors:
    the .rmc bytes of the streams it may be coded given (remac-encode --prior)."""
    from remac.ground_decoder.decode import decode as decode_stream
    return decode_stream(bytes(data), _library(library), strict, threads, reduce, models=tuple(models),
                         priors=[bytes(p) for p in priors]).image


def _stream_metadata(payload: bytes, warnings: list) -> metadata.Metadata:
    try:
        return metadata.unpack(payload) if payload else None
    except FormatError as exc:
        warnings.append(f"metadata dropped ({exc})")
        return None


def decode_file(path, out=None, *, library=None, strict: bool = False, threads: int = 2, force: bool = False,
                reduce: int = 0, progress: bool = False, models=(), bases=(), priors=()) -> dict:
    """Decode the .rmc file `path` ('-': stdin) to the image `out` (default: beside it, .dec.png;
    '-': stdout as PNG; the format follows the extension, lossy ones only with force), written
    atomically with the stream's metadata. -> what remac-decode --json reports: output, bytes (of
    the stream), bpp, quality, refs, lost_tiles, damaged, ..., warnings (a list of lines). bases:
    when `path` is a refinement layer, the .rmc files below it, base first (bitstream.layers); the
    image's metadata then comes from the base. priors: .rmc files a stream may be coded given
    (remac-encode --prior; each named by its stream ID)."""
    inp = str(path)
    name = input_name(inp)
    out = output_for(inp, None, 1, ".dec.png") if out is None else str(out)
    data = read_input(inp)
    lossy = check_lossless(out, force)
    if not data.startswith(SIGNATURE):
        kind = "an image" if data[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1") else "not a .rmc stream"
        raise RemacError(f"{name}: {kind} (remac-decode reads .rmc streams; use remac-encode for images)")
    try:
        parsed = container.read(data)
    except FormatError:
        parsed = None       # a damaged header: decode_stream reports it
    if parsed is not None:
        check_channels(out, parsed.header.output_channels)     # before a long decode
    from remac.ground_decoder.decode import decode as decode_stream       # torch: only now
    try:
        below = [read_input(str(b)) for b in bases]
        result = decode_stream(data, _library(library), strict, threads, reduce, progress, tuple(models), below,
                               [read_input(str(p)) for p in priors])
    except RemacError as exc:
        raise RemacError(f"{name}: {exc}") from None
    warnings = list(result.warnings) + ([lossy] if lossy else [])
    h = result.header
    meta = parsed.metadata if not below else container.read(below[0]).metadata
    atomic_write(out, image_bytes(result.image, out, h.bit_depth, _stream_metadata(meta, warnings)))
    ref = lambda i: None if i == container.ZERO_ID else i.hex()
    width, height = h.image_size
    return {"output": out, "bytes": len(data), "bpp": round(8 * len(data) / (width * height), 4),
            "width": width, "height": height, "channels": h.output_channels, "bit_depth": h.bit_depth,
            "quality": h.quality_value, "refs": {"entropy": ref(h.entropy_ref_id), "decoder": ref(h.decoder_ref_id)},
            "lost_tiles": result.lost_tiles, "damaged": bool(result.lost_tiles or result.problems),
            "reduce": reduce, "warnings": [f"{name}: {w}" for w in warnings],
            "summary": f"{name} -> {out}", **({"layers": len(below) + 1} if below else {}),
            **({"prior": h.prior_id.hex()} if h.has_prior else {})}
