"""Loading a model's bitstream artifacts: the integer entropy model shared by rover and ground.

    bitstream/assets/<name>/model.json   name, channels, M, Z, layer kinds, encoder ONNX sha256,
                                         model_id (hex, 8 bytes)
    bitstream/assets/<name>/entropy.npz  integer h_s layers ("hs/<part>/<i>/<field>"), tables
                                         ("y/..", "z/..": counts, offsets, sizes), gain_int (101, M)

The model ID is the SHA-256 (first 8 bytes) of the canonical content of the integer arrays and of
the encoder's trained weights (not of the ONNX bytes, which the exporter does not reproduce
bit for bit), so re-exporting the same checkpoint keeps the ID. `load` recomputes and checks it;
the ONNX files are checked against `encoder_sha256` (float) and `encoder_int8_sha256` (the
optional statically quantized analysis, same trained weights) when the rover opens them. Which of
the two analysed an image never matters to decoding: only z_hat and the integer path feed the coder.
"""
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from remac.bitstream import intnet, npz, spec
from remac.bitstream import spatial as bitstream_spatial
from remac.bitstream.entropy import TableSet
from remac.bitstream.errors import ModelError

ASSETS = Path(__file__).parent / "assets"
SHIPPED = ("grey",)      # the shipped models; colour images are coded as planes by grey (format 3.0)
_PARTS = ("trunk", "ref", "fuse", "out")


@dataclass
class EntropyModel:
    name: str
    channels: int
    m: int
    nz: int
    net: dict
    y_tables: TableSet
    z_tables: TableSet
    gain_int: np.ndarray            # (101, M) int64
    model_id: bytes
    encoder_sha256: dict            # {"float": sha256 hex, "int8": sha256 hex (if shipped)}
    folder: Path = None             # where model.json / entropy.npz came from
    idx_floors: np.ndarray = None   # (B, M) int64 scale-index floors per quality band, or None
    floor_edges: np.ndarray = None  # (B-1,) int64: band b holds qualities (hundredths) edges[b-1] <= q < edges[b]
    chroma_floors: np.ndarray = None    # (B, M) int64 floors of chroma planes (Cb, Cr), or None: idx_floors
    spatial: np.ndarray = None      # (B, 2, CLASSES) int64 scale-index shifts of channel 0's passes 1, 2 (bitstream.spatial), or None

    def floors_at(self, q100: int, chroma: bool = False):
        """(M,) scale-index floors at quality q100 (hundredths) of a luma / grey plane, or of a
        chroma plane when `chroma` (its own floors where the model has them), or None for a model
        without floors (releases before session 6: the network's own clip is the only floor)."""
        if self.idx_floors is None:
            return None
        floors = self.chroma_floors if chroma and self.chroma_floors is not None else self.idx_floors
        return floors[self.band(q100)]

    def band(self, q100: int) -> int:
        """The quality band of q100 (hundredths): b = #{floor_edges <= q100}."""
        return int(np.searchsorted(self.floor_edges, q100, side="right"))

    def spatial_at(self, q100: int):
        """(2, CLASSES) scale-index shifts of channel 0's passes 1 and 2 at quality q100, or None for
        a model without spatial context (releases before session 8: channel 0 coded in one pass)."""
        return None if self.spatial is None else self.spatial[self.band(q100)]


def canonical_digest(arrays: dict, meta: dict) -> bytes:
    """SHA-256 over sorted (name, dtype, shape, bytes) and the identifying metadata fields."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    ident = {k: meta[k] for k in ("name", "channels", "m", "nz", "layers", "encoder_weights_sha256")}
    h.update(json.dumps(ident, sort_keys=True).encode())
    return h.digest()[:8]


def _tables(arrays, prefix):
    return TableSet(arrays[f"{prefix}/counts"].astype(np.int64), arrays[f"{prefix}/offsets"].astype(np.int64),
                    arrays[f"{prefix}/sizes"].astype(np.int64))


def _slices_ok(slices, m: int) -> bool:
    return slices[0] == 0 and slices[-1] == m and all(a < b for a, b in zip(slices, slices[1:]))


def _net(arrays, layers):
    """The integer network's layers; a model with channel context (bitstream.latent) also has
    layers["slices"] (channel boundaries) and one part ctx<k> per slice k >= 1."""
    net = {}
    slices = layers.get("slices")
    if slices is not None:
        net["slices"] = [int(v) for v in slices]
    for part in _PARTS + tuple(f"ctx{k}" for k in range(1, len(slices or ()) - 1)):
        kinds = layers[part] if isinstance(layers[part], list) else [layers[part]]
        built = []
        for i, kind in enumerate(kinds):
            layer = {"kind": kind}
            if kind == "conv":
                for f in ("weight", "bias", "mult", "lo", "hi"):
                    layer[f] = arrays[f"hs/{part}/{i}/{f}"].astype(np.int64)
            built.append(layer)
        net[part] = built if isinstance(layers[part], list) else built[0]
    return net


@lru_cache(maxsize=8)
def load(name: str, assets: Path = ASSETS) -> EntropyModel:
    """The shipped model `name` (bitstream/assets/<name>/), or the one in `assets`/<name>/."""
    return load_dir(Path(assets) / name)


@lru_cache(maxsize=16)
def load_dir(folder: Path) -> EntropyModel:
    """The entropy model in a model directory (model.json + entropy.npz): a shipped model's assets
    folder or a released model in a store (bitstream.store)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "model.json").read_text())
        arrays = npz.read_all(folder / "entropy.npz")
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"model in {folder}: cannot read its artifacts ({exc})") from None
    name = meta.get("name", "?")
    if canonical_digest(arrays, meta).hex() != meta.get("model_id"):
        raise ModelError(f"model '{name}': artifacts in {folder} do not match their model ID (damaged?)")
    net = _net(arrays, meta["layers"])
    intnet.prepare(net)
    gain = arrays["gain_int"].astype(np.int64)
    y_tables, z_tables = _tables(arrays, "y"), _tables(arrays, "z")
    m, idx_lo, idx_hi = meta["m"], net["out"]["lo"][meta["m"]:], net["out"]["hi"][meta["m"]:]
    floors, edges, chroma = arrays.get("floors/idx"), arrays.get("floors/edges"), arrays.get("floors/chroma")
    if (floors is None) != (edges is None) or (chroma is not None and floors is None):
        raise ModelError(f"model '{name}': scale-index floors without their quality bands (or the reverse)")
    if floors is not None:
        floors, edges = floors.astype(np.int64), edges.astype(np.int64)
        chroma = None if chroma is None else chroma.astype(np.int64)
        indices = lambda a: a.min() >= 0 and a.max() < len(y_tables.sizes)
        fits = (edges.ndim == 1 and floors.shape == (len(edges) + 1, m) and bool(np.all(np.diff(edges) > 0))
                and indices(floors) and (chroma is None or (chroma.shape == floors.shape and indices(chroma))))
        if not fits:
            raise ModelError(f"model '{name}': scale-index floors {floors.shape} do not fit bands {edges.shape} "
                             f"and {m} channels (or the chroma floors do not match them)")
    spatial = arrays.get("spatial/delta")
    if spatial is not None:
        spatial = spatial.astype(np.int64)
        if floors is None or spatial.shape != (len(edges) + 1, 2, bitstream_spatial.CLASSES) \
                or np.abs(spatial).max() >= spec.SCALE_LEVELS:
            raise ModelError(f"model '{name}': spatial context shifts {spatial.shape} do not fit the quality "
                             f"bands (or exceed the scale table)")
    checks = [(gain.shape == (spec.QUALITY_LEVELS, m), f"gain table has shape {gain.shape}"),
              (len(z_tables.sizes) == meta["nz"], "z tables do not match the hyper-latent channels"),
              (idx_lo.min() >= 0 and idx_hi.max() < len(y_tables.sizes), "scale indices exceed the y tables"),
              (_slices_ok(net.get("slices", [0, m]), m), f"channel slices {net.get('slices')} do not split 0..{m}")]
    for ok, message in checks:
        if not ok:
            raise ModelError(f"model '{name}': {message}")
    return EntropyModel(name, meta["channels"], m, meta["nz"], net, y_tables, z_tables, gain,
                        bytes.fromhex(meta["model_id"]),
                        {"float": meta["encoder_sha256"], "int8": meta.get("encoder_int8_sha256")}, folder,
                        floors, edges, chroma, spatial)


def for_channels(channels: int) -> EntropyModel:
    """The shipped model that codes `channels`-channel images: grey for both (colour as Y, Cb, Cr
    planes; the colour model of releases up to 3cfa6a5f's era lives in the model store)."""
    if channels not in (1, 3):
        raise ModelError(f"no model codes {channels}-channel images")
    return load("grey")


def by_id(model_id: bytes, stores=()) -> EntropyModel:
    """The model a stream names: a shipped one, else a released one in one of `stores` (directories
    of model directories named by model ID, bitstream.store). Unknown: ModelError naming it."""
    for name in SHIPPED:
        model = load(name)
        if model.model_id == model_id:
            return model
    from remac.bitstream import store
    folder = store.find_model(model_id, stores)
    if folder is not None:
        model = load_dir(folder)
        if model.model_id == model_id:
            return model
    have = ", ".join(load(n).model_id.hex() + " (" + n + ")" for n in SHIPPED)
    searched = "".join(f", {s}" for s in stores)
    raise ModelError(f"stream needs model {model_id.hex()}, which this installation does not have "
                     f"(shipped: {have}; stores searched: {len(stores)}{searched}); in a clone of the repository "
                     f"with its history, `bash scripts/restore_release.sh {model_id.hex()}` restores it into "
                     f"models/store, or add a store that has it with --models DIR")
