""".rmc bytes -> image on the ground.

    container.read --> header (model ID, library ID, reference IDs, geometry)
        library check --> entropy ref stats (ints), decoder ref image
        per tile: TileDecoder: z_hat --intnet--> (mu16, idx) --> y symbols --> y_hat_g = s + mu16/16
        tiles' latents placed side by side --> one latent map --> RefDecoder --> crop --> 8/16-bit
    Damaged or missing tiles: refused with --strict, otherwise concealed (flat fill) and listed.
"""
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from bitstream import container, entropy, intnet, modelfile, spec
from bitstream.container import ZERO_ID
from bitstream.errors import LibraryError, RemacError, TileError
from bitstream.library import Library, load as load_library
from models import ground

REF_FALLBACK = 256          # side of the all-zero decoder reference when none is used


@dataclass
class DecodeResult:
    image: np.ndarray                           # (H,W) or (H,W,3), uint8 or uint16
    header: container.Header
    lost_tiles: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


@lru_cache(maxsize=1)
def _default_library() -> Library:
    return load_library()


def resolve_library(header, library: Library = None) -> Library:
    """The library a stream needs, or None. Raises LibraryError when `library` is not it."""
    if header.library_id == ZERO_ID:
        return None
    library = library if library is not None else _default_library()
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


def decode_tile(model, header, words, index, r):
    """-> (z_hat, mu16, idx, y_hat_g) of tile `index`; y_hat_g (M, ph/16, pw/16) float32."""
    ph, pw = header.padded_tile(index)
    dec = entropy.TileDecoder(words, index)
    z_hat = dec.z((model.nz, ph // 64, pw // 64), model.z_tables)
    if np.abs(z_hat).max(initial=0) > spec.Z_CLIP:
        raise TileError(index, f"tile {index}: hyper-latent out of range (damaged)")
    mu16, idx = intnet.hyper_synthesis(model.net, z_hat, r)
    s = dec.y(idx, model.y_tables)
    return z_hat, mu16, idx, entropy.dequantize(s, mu16)


def entropy_decode(data: bytes, library: Library = None):
    """Parse and entropy-decode every tile (no synthesis).

    -> (parsed, model, library, {index: (z_hat, mu16, idx, y_hat_g)}, lost indices, problems)
    """
    parsed = container.read(data)
    header = parsed.header
    model = modelfile.by_id(header.model_id)
    if model.channels != header.coded_channels:
        raise RemacError(f"stream codes {header.coded_channels} channels but model {model.name} has {model.channels}")
    library = resolve_library(header, library)
    if library is not None:
        library.check_model(model.name, model.model_id, model.m)
    stats = library.stats16(header.entropy_ref_id.hex()) if header.entropy_ref_used else None
    r = spec.ref_input(stats, model.gain_int[header.quality])
    problems = [reason for _, reason in parsed.damaged]
    tiles, lost = {}, []
    for index in range(header.tile_count):
        try:
            if index not in parsed.tiles:
                raise TileError(index, f"tile {index} is missing")
            tiles[index] = decode_tile(model, header, parsed.tiles[index], index, r)
        except TileError as exc:
            lost.append(index)
            problems.append(str(exc))
    return parsed, model, library, tiles, lost, problems


def decode(data: bytes, library: Library = None, strict: bool = False, threads: int = 2) -> DecodeResult:
    parsed, model, library, tiles, lost, problems = entropy_decode(data, library)
    header = parsed.header
    if problems and strict:
        raise RemacError("damaged stream: " + "; ".join(problems))
    if not tiles:
        raise RemacError("damaged stream: no tile could be decoded (" + "; ".join(problems[:3]) + ")")
    x_ref = decoder_reference(header, library, model.channels)
    latents = {i: t[3] for i, t in tiles.items()}

    y_map = assemble(header, latents, model.m)
    torch.set_num_threads(threads)
    gm = ground.load(model.name)
    if gm.model_id != model.model_id:
        raise RemacError(f"ground decoder weights are for model {gm.model_id.hex()}, stream needs {model.model_id.hex()}")
    x_hat = gm.synthesize(torch.from_numpy(y_map)[None], header.quality, x_ref)[0].numpy()
    x_hat = x_hat[:, :header.height, :header.width]
    conceal(x_hat, header, lost)
    warnings = []
    if lost:
        warnings.append(f"lost tiles {', '.join(map(str, lost))} (filled flat)")
    if problems:
        warnings.append("damage: " + "; ".join(problems))
    return DecodeResult(to_samples(x_hat, header), header, lost, warnings)


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


def conceal(x_hat: np.ndarray, header, lost: list) -> None:
    """Fill lost tiles with the mean of the decoded pixels (mid-grey if nothing decoded), in place."""
    if not lost:
        return
    mask = np.ones(x_hat.shape[1:], dtype=bool)
    for index in lost:
        top, left, h, w = header.tile_box(index)
        mask[top:top + h, left:left + w] = False
    fill = x_hat[:, mask].mean(axis=1) if mask.any() else np.full(x_hat.shape[0], 0.5, np.float32)
    x_hat[:, ~mask] = fill[:, None]


def to_samples(x_hat: np.ndarray, header) -> np.ndarray:
    """(C,H,W) float in [0,1] -> (H,W) / (H,W,3) uint8 or uint16, expanding grey to RGB if needed."""
    peak = 255 if header.bit_depth == 8 else 65535
    a = np.floor(x_hat * peak + 0.5).astype(np.uint8 if peak == 255 else np.uint16)
    if header.output_channels == 3 and a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
