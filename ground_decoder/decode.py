""".rmc bytes -> image on the ground.

    container.read --> header (model ID, library ID, reference IDs, geometry)
        library check --> entropy ref stats (ints), decoder ref image
        per tile: TileDecoder: z_hat --intnet--> (mu16, idx) --> y symbols --> y_hat_g = s + mu16/16
        per plane (one, or Y, Cb, Cr of a 3.0 luma/chroma stream):
        tiles' latents placed side by side --> one latent map --> RefDecoder, tile by tile on a fixed
        grid (models.ground: same pixels for any --threads) --> crop --> integer samples
        (planes: float planes --bitstream.colour.from_planes--> RGB --> integer samples)
        (--reduce N: the 1/16 trunk and a fitted preview head -> 1/2^N size, a fraction of the cost)
    Damaged or missing tiles: refused with --strict, otherwise concealed (flat fill) and listed.
"""
import ctypes
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from remac.bitstream import colour, container, layers, modelfile, prior, spec, store
from remac.bitstream.latent import decode_tile
from remac.bitstream.container import ZERO_ID
from remac.bitstream.errors import LibraryError, RemacError, TileError
from remac.bitstream.library import DEFAULT as DEFAULT_LIBRARY, Library, load as load_library
from remac.models import ground

REF_FALLBACK = 256          # side of the all-zero decoder reference when none is used


@dataclass
class DecodeResult:
    image: np.ndarray                           # (H,W) or (H,W,3), uint8 or uint16
    header: container.Header
    lost_tiles: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    problems: list = field(default_factory=list)   # damage found in the stream (remac-decode exits 3)


@lru_cache(maxsize=1)
def _default_library() -> Library:
    return load_library()


@lru_cache(maxsize=4)
def _stored_library(path) -> Library:
    """A release's library from a model store; its images are the default library's."""
    return load_library(path, images=DEFAULT_LIBRARY / "images")


def stores(models=()) -> tuple:
    """Model stores to search for a stream's model and library: `models` (remac-decode --models),
    then the shipped one (models/store: every earlier release, bitstream.store)."""
    return (*models, ground.STORE)


def resolve_library(header, library: Library = None, models=()) -> Library:
    """The library a stream needs, or None: `library` if given, else the shipped default, else the
    default as an earlier release built it (from a model store; the same reference images).
    Raises LibraryError when it is none of those."""
    if header.library_id == ZERO_ID:
        return None
    if library is None:
        library = _default_library()
        stored = None if library.id_bytes == header.library_id else \
            store.find_library(header.library_id.hex(), stores(models))
        if stored is not None:
            library = _stored_library(stored)
    if library.id_bytes != header.library_id:
        raise LibraryError(f"stream needs reference library {header.library_id.hex()}, but {library.path} "
                           f"is library {library.library_id}")
    return library


def decoder_reference(header, library, channels) -> torch.Tensor:
    """(1,C,h,w) float reference image in [0,1] (zeros when the stream names none)."""
    if header.decoder_ref_id == ZERO_ID:
        return torch.zeros(1, channels, REF_FALLBACK, REF_FALLBACK)
    path = library.image_path(header.decoder_ref_id.hex())
    im = Image.open(path).convert("L" if channels == 1 else "RGB")
    a = np.asarray(im, dtype=np.float32).reshape(im.height, im.width, channels) / 255
    return torch.from_numpy(a.transpose(2, 0, 1).copy())[None]


def entropy_decode(data: bytes, library: Library = None, latents_only: bool = False, models=()):
    """Parse and entropy-decode every tile (no synthesis).

    -> (parsed, model, library, {index: (z_hat, mu16, idx, y_hat_g)}, lost indices, problems)
    latents_only: {index: y_hat_g} instead, what synthesis needs (1/5 of the memory: 2.6 MB per
    512-px tile otherwise, 170 MB for a 4096^2 frame). models: extra model stores (stores()).
    """
    parsed = container.read(data)
    header = parsed.header
    if header.has_prior:
        raise RemacError(f"this stream is coded given prior stream {header.prior_id.hex()}: decode it with that "
                         f"stream (remac-decode --prior PRIOR.rmc ...)")
    if header.layer:
        raise RemacError(f"this is refinement layer {header.layer} of base stream {header.base_id.hex()} (quality "
                         f"{header.base_q100 / 100:g}): decode it with its base (remac-decode --base BASE.rmc ...)")
    model, library = stream_model(header, library, models)
    problems = [reason for _, reason in parsed.damaged]
    tiles, lost = {}, []
    for k, (plane, offset) in enumerate(header.coded_planes()):
        stats = library.stats16(plane.entropy_ref_id.hex()) if plane.entropy_ref_used else None
        r = spec.ref_input(stats, spec.gain_int_at(model.gain_int, plane.q100))
        for index in range(offset, offset + plane.tile_count):
            try:
                if index not in parsed.tiles:
                    raise TileError(index, f"tile {index} is missing")
                q100 = plane.tile_q100(index - offset)     # a quality map's (regions of interest), else the plane's
                if q100 == plane.q100:
                    tile = decode_tile(model, plane, parsed.tiles[index], index, r, index - offset, chroma=k > 0)
                else:
                    tile = decode_tile(model, plane.at_q100(q100), parsed.tiles[index], index,
                                       spec.ref_input(stats, spec.gain_int_at(model.gain_int, q100)), index - offset,
                                       chroma=k > 0)
                tiles[index] = tile[3] if latents_only else tile
            except TileError as exc:
                lost.append(index)
                problems.append(str(exc))
    return parsed, model, library, tiles, lost, problems


def stream_model(header, library: Library = None, models=()):
    """-> (modelfile.EntropyModel, Library or None) a stream's header needs, both checked."""
    model = modelfile.by_id(header.model_id, stores(models))
    coded = 1 if header.planes else header.coded_channels
    if model.channels != coded:
        raise RemacError(f"stream codes {coded}-channel planes but model {model.name} has {model.channels} channels")
    library = resolve_library(header, library, models)
    if library is not None:
        library.check_model(model.name, model.model_id, model.m)
    return model, library


def entropy_decode_layers(streams: list, library: Library = None, models=(), priors=()):
    """A base stream and its refinement layers (bytes, base first; bitstream.layers) -> (top layer's
    header, model, library, {index: y_hat_g} of the top layer, lost indices, problems). priors: the
    streams the base may be coded given (bytes; bitstream.prior), its own priors' priors included."""
    parsed = [container.read(bytes(s)) for s in streams]
    base = parsed[0].header
    given = library
    model, library = stream_model(base, library, models)
    stats = library.stats16(base.entropy_ref_id.hex()) if base.entropy_ref_used else None

    def ref_input(h):       # a prior's entropy reference, from its own library
        lib_h = resolve_library(h, given, models)
        return spec.ref_input(lib_h.stats16(h.entropy_ref_id.hex()), spec.gain_int_at(model.gain_int, h.q100))
    chain = layers.decode_chain(streams, model, spec.ref_input(stats, spec.gain_int_at(model.gain_int, base.q100)),
                                parsed, prior.Pool(priors, ref_input))
    return chain.header, model, library, chain.latents(), chain.lost, chain.problems


def decode(data: bytes, library: Library = None, strict: bool = False, threads: int = 2, reduce: int = 0,
           progress: bool = False, models=(), bases=(), priors=()) -> DecodeResult:
    """Decode a stream. threads: synthesis workers (the pixels do not depend on it); reduce 1..3:
    a preview at 1/2, 1/4 or 1/8 linear size from the preview head (models.ground; a small fraction
    of a full decode); progress: a tqdm bar on stderr over the synthesis tiles of large frames;
    models: extra model stores for streams of earlier releases (the shipped store is always searched);
    bases: when `data` is a refinement layer, the layers below it (bytes, base first; bitstream.layers);
    priors: streams it may be coded given (bytes; bitstream.prior): the image is the decoded canvas
    less the header's crop."""
    if reduce not in (0, 1, 2, 3):
        raise RemacError(f"reduce must be 0..3, not {reduce}")
    if bases or container.read(data).header.has_prior:
        header, model, library, tiles, lost, problems = entropy_decode_layers([*bases, data], library, models, priors)
    else:
        parsed, model, library, tiles, lost, problems = entropy_decode(data, library, latents_only=True, models=models)
        header = parsed.header
    _check_decodable(tiles, problems, strict)
    gm = ground_model(model)
    warnings = []
    boxed = reduce and gm.preview_head() is None
    if boxed:
        warnings.append(f"no preview head fitted to this {gm.name} decoder: decoded in full, then box-downsampled")
    synth_reduce = 0 if boxed else reduce
    large_blocks_to_the_os()
    coded = header.coded_planes()
    together = threads > 1 and len(coded) > 1

    def synthesize(k, plane, offset):
        y_map, x_ref, plane_lost = plane_input(plane, offset, tiles, lost, model, library, gm)
        image = render(gm, y_map, plane, x_ref, threads, synth_reduce, progress and not (together and k),
                       samples=not header.planes, consume=True, workers=workers)
        del y_map
        conceal(image, plane, plane_lost, 1 << synth_reduce)
        return image
    with ground.Workers(threads, gm.precision) as workers:
        if together:        # the planes' tiles share the workers: a small frame's few tiles keep both busy
            with ThreadPoolExecutor(len(coded)) as planes_pool:
                planes = list(planes_pool.map(synthesize, range(len(coded)), *zip(*coded)))
        else:
            planes = [synthesize(k, plane, offset) for k, (plane, offset) in enumerate(coded)]
    image = colour_samples(planes, header) if header.planes else planes[0]
    if boxed:
        image = box_reduce(image, reduce)
    if lost:
        warnings.append(f"lost tiles {', '.join(map(str, lost))} (filled flat)")
    if problems:
        warnings.append("damage: " + "; ".join(problems))
    image = to_samples(image, header)
    if header.has_prior:        # the canvas less the rows / columns the rover prepended
        cy, cx = (-(-c // (1 << reduce)) for c in header.prior_crop)
        image = image[cy:, cx:]
    return DecodeResult(image, header, lost, warnings, problems)


M_MMAP_THRESHOLD = -3          # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 1 << 20        # bytes: blocks from this size up are mapped, and unmapped when freed


@lru_cache(maxsize=1)
def large_blocks_to_the_os() -> bool:
    """Before synthesis: have glibc's malloc map every block of MMAP_THRESHOLD bytes or more on its
    own and give it back when it is freed. By default glibc raises that threshold to the size of
    each large block freed (up to 32 MiB), after which synthesis's tile activations (2-90 MiB, two
    workers) are carved from per-thread heaps and stay in the process once freed: a 4096^2 grey
    frame peaked at 1.31 GiB that way, 0.88 GiB with the fixed threshold (the same pixels; only
    where memory comes from). Set once per process, after entropy decoding, whose many small arrays
    reuse the heap faster. Fresh mappings cost page faults: remac-decode's entry point has PyTorch
    back its large tensors with transparent huge pages (ground_decoder.entry), without which a 1-MP
    decode took ~7 % longer. -> whether it was set (False off glibc: nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def _check_decodable(tiles: dict, problems: list, strict: bool):
    if problems and strict:
        raise RemacError("damaged stream: " + "; ".join(problems))
    if not tiles:
        raise RemacError("damaged stream: no tile could be decoded (" + "; ".join(problems[:3]) + ")")


def ground_model(model) -> "ground.GroundModel":
    """The ground decoder of entropy model `model` (shipped or from a store), checked to match it."""
    gm = ground.for_model(model)
    if gm.model_id != model.model_id:
        raise RemacError(f"ground decoder weights are for model {gm.model_id.hex()}, stream needs {model.model_id.hex()}")
    return gm


def plane_input(plane, offset: int, tiles: dict, lost: list, model, library, gm):
    """One plane's synthesis input from the stream's decoded latents {stream tile index: y_hat_g}:
    -> (y_map (M,h,w) gained latent scaled to the plane's fractional quality (lost tiles zero),
    decoder reference (1,C,h',w'), the plane's lost tiles (indices within the plane)). The plane's
    tiles are taken out of `tiles` as they are placed, so they do not sit beside the map during
    synthesis (64 MiB for a 4096^2 grey frame)."""
    mine = range(offset, offset + plane.tile_count)
    y_map = assemble(plane, {i - offset: tiles.pop(i) for i in mine if i in tiles}, model.m)
    y_map *= fractional_inverse_gain(gm.inv_gain.numpy(), plane)[:, None, None]
    if plane.roi_levels:        # tiles of a quality map at another quality: their own inverse gain
        inv = gm.inv_gain.numpy()
        t16h, t16w = plane.tile_height // 16, plane.tile_width // 16
        for local in range(plane.tile_count):
            q100 = plane.tile_q100(local)
            if q100 != plane.q100:
                ty, tx = divmod(local, plane.tiles_x)
                factor = (inverse_gain_at(inv, q100) / inverse_gain_at(inv, plane.q100)).astype(np.float32)
                y_map[:, ty * t16h:(ty + 1) * t16h, tx * t16w:(tx + 1) * t16w] *= factor[:, None, None]
    return y_map, decoder_reference(plane, library, model.channels), [i - offset for i in lost if i in mine]


def colour_samples(planes: list, header) -> np.ndarray:
    """Decoded [Y, C1, C2] (h,w,1) float planes of a planar stream -> (H,W,3) uint8 RGB (through
    the stream's colour transform: BT.601 or its own)."""
    rgb = colour.from_planes([p[:, :, 0] for p in planes], header.chroma_shift, header.colour_transform)
    np.clip(rgb, 0, 1, out=rgb)                     # in place: the same operations, no frame-sized
    rgb *= sample_peak(header)                      # float64 temporaries (24 MiB each per MP)
    rgb += 0.5
    np.floor(rgb, out=rgb)
    return rgb.astype(np.uint8).transpose(1, 2, 0)


def synthesis_input(data: bytes, library: Library = None, strict: bool = False, models=()):
    """Entropy-decode a stream for synthesis: -> (header, GroundModel, y_map (M,h,w) gained latent
    (lost tiles zero), decoder reference (1,C,h',w'), lost tile indices, problems). For a planar
    stream: its luma plane (header: the plane's)."""
    parsed, model, library, tiles, lost, problems = entropy_decode(data, library, latents_only=True, models=models)
    _check_decodable(tiles, problems, strict)
    gm = ground_model(model)
    plane, offset = parsed.header.coded_planes()[0]
    y_map, x_ref, plane_lost = plane_input(plane, offset, tiles, lost, model, library, gm)
    return plane, gm, y_map, x_ref, plane_lost, problems


def sample_peak(header) -> int:
    return (1 << header.bit_depth) - 1          # 10..14-bit samples go in uint16 as 0..2^D-1


def render(gm, y_map: np.ndarray, header, x_ref, threads: int = 2, reduce: int = 0, progress: bool = False,
           samples: bool = True, consume: bool = False, workers=None) -> np.ndarray:
    """Synthesize the gained latent map y_map (M,h,w) -> (H',W',C) uint8 / uint16 samples (samples
    False: float32 in [0,1], for planes still to be combined), H' x W' the frame's size divided by
    2^reduce (rounded up). Each synthesis tile is quantized into the preallocated image as it is
    done (no whole-frame float copy). consume: y_map is overwritten (ungained in place); workers: a
    models.ground.Workers pool shared with other planes (else one of `threads` workers)."""
    f, s = 1 << reduce, 16 >> reduce
    height, width = -(-header.height // f), -(-header.width // f)
    peak = sample_peak(header) if samples else 1
    out = np.empty((height, width, gm.channels), np.float32 if not samples else np.uint8 if peak == 255 else np.uint16)

    def sink(box, x):
        r0, c0 = s * box[0], s * box[2]
        if r0 >= height or c0 >= width:             # all padding
            return
        q = x[0, :, :height - r0, :width - c0].float().clamp(0, 1)
        q = (q * peak + 0.5).floor() if samples else q
        out[r0:r0 + q.shape[1], c0:c0 + q.shape[2]] = q.permute(1, 2, 0).numpy()
    with progress_bar(progress, gm.tile_count(*y_map.shape[1:])) as update:
        gm.run(torch.from_numpy(y_map)[None], header.quality, x_ref, sink, threads, update, reduce, consume=consume,
               workers=workers)
    return out


@contextmanager
def progress_bar(enabled: bool, total: int):
    """-> update(n) of a tqdm bar on stderr, or None when disabled or for one tile per pass."""
    if not enabled or total <= 2:
        yield None
        return
    from tqdm import tqdm
    with tqdm(total=total, desc="synthesis", unit="tile", leave=False, file=sys.stderr) as bar:
        yield bar.update


def box_reduce(image: np.ndarray, reduce: int) -> np.ndarray:
    """(H,W,C) integer samples -> the means of their 2^reduce x 2^reduce blocks, rounded (partial
    blocks at the right and bottom edges: the mean of what they hold)."""
    f = 1 << reduce
    sums = image.astype(np.float64)
    for axis in (0, 1):
        starts = np.arange(0, image.shape[axis], f)
        counts = np.diff(np.append(starts, image.shape[axis])).reshape((-1, 1, 1) if axis == 0 else (1, -1, 1))
        sums = np.add.reduceat(sums, starts, axis=axis) / counts
    return np.floor(sums + 0.5).astype(image.dtype)


def fractional_inverse_gain(inv_gain: np.ndarray, header) -> np.ndarray:
    """(M,) factor that turns the ground's inverse gain at whole quality `header.quality` into the
    one at quality + quality_frac/100: the learned inverse gains interpolated geometrically, as the
    model interpolates them (ones for a whole quality). The synthesis multiplies by inv_gain[quality]."""
    f = header.quality_frac / spec.QUALITY_STEPS
    if not f:
        return np.ones(inv_gain.shape[1], np.float32)
    lo = header.quality
    return ((inv_gain[lo + 1] / inv_gain[lo]) ** f).astype(np.float32)


def inverse_gain_at(inv_gain: np.ndarray, q100: int) -> np.ndarray:
    """(M,) float64 ground inverse gain at quality q100 (hundredths): the learned rows interpolated
    geometrically, inv[lo]^(1-f) * inv[lo+1]^f (fractional_inverse_gain's rule)."""
    lo, f = divmod(int(q100), spec.QUALITY_STEPS)
    row = inv_gain[lo].astype(np.float64)
    return row if not f else row * (inv_gain[lo + 1].astype(np.float64) / row) ** (f / spec.QUALITY_STEPS)


def assemble(header, latents: dict, m: int) -> np.ndarray:
    """Place each tile's latent at its position: -> (M, H_l, W_l); lost tiles stay zero."""
    t16h, t16w = header.tile_height // 16, header.tile_width // 16
    last_h = header.padded_tile(header.tile_count - 1)[0] // 16
    last_w = header.padded_tile(header.tiles_x - 1)[1] // 16
    y_map = np.zeros((m, (header.tiles_y - 1) * t16h + last_h, (header.tiles_x - 1) * t16w + last_w), np.float32)
    for index, y in latents.items():
        ty, tx = divmod(index, header.tiles_x)
        y_map[:, ty * t16h:ty * t16h + y.shape[1], tx * t16w:tx * t16w + y.shape[2]] = y
    return y_map


def conceal(image: np.ndarray, header, lost: list, f: int = 1) -> None:
    """Fill lost tiles of the (H,W,C) samples (of a frame reduced f times) with the mean of the
    decoded samples (mid-grey if nothing decoded), in place."""
    if not lost:
        return
    mask = np.ones(image.shape[:2], dtype=bool)
    for index in lost:
        top, left, h, w = header.tile_box(index)
        mask[top // f:-(-(top + h) // f), left // f:-(-(left + w) // f)] = False
    if image.dtype.kind == "f":     # float planes in [0,1]
        fill = image[mask].mean(axis=0) if mask.any() else np.full(image.shape[2], 0.5)
    else:
        peak = sample_peak(header)
        fill = np.floor(image[mask].mean(axis=0) + 0.5) if mask.any() else np.full(image.shape[2], (peak + 1) // 2)
    image[~mask] = fill.astype(image.dtype)


def to_samples(image: np.ndarray, header) -> np.ndarray:
    """(H,W,C) samples -> (H,W) / (H,W,3), expanding grey to RGB if the stream asks for it."""
    if header.output_channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, 0] if image.shape[2] == 1 else image
