"""The reference library: a content-addressed directory shared by rover and ground.

    lib/
      library.json     {"format": "remac-library", "version": 1, "library_id": hex16,
                        "models": {"grey": model_id_hex, ...}, "rover_export": bool,
                        "entries": [{"id": hex16, "sha256": hex64, "name", "modality",
                                     "width", "height", "channels"}]}
      images/<id>.png  reference images (the ground needs them; a rover export drops them)
      latents.npz      "<id>" -> (2, M) int32 latent statistics (mean, MAD; units 1/16)
      descriptors.npz  "deep/<id>" (2M,) and "shallow/<id>" (2N,) float32 selection descriptors

The library ID hashes everything that can change decoded bits (entries, model IDs, latent
statistics); descriptors only steer selection and are left out of it.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from remac.bitstream import npz
from remac.bitstream.errors import LibraryError

FORMAT = "remac-library"
VERSION = 1
DEFAULT = Path(__file__).parent / "assets" / "library"
SMALL = 16      # below this many entries remac-lib build and remac-encode call a library small (the shipped one: 96)


def compute_library_id(models: dict, entries: list, latents: dict) -> str:
    h = hashlib.sha256()
    ident = {"version": VERSION, "models": models,
             "entries": sorted((e["id"], e["sha256"], e["modality"]) for e in entries)}
    h.update(json.dumps(ident, sort_keys=True).encode())
    for key in sorted(latents):
        a = np.ascontiguousarray(latents[key], dtype=np.int32)
        h.update(key.encode() + a.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Library:
    path: Path
    library_id: str
    models: dict
    entries: dict            # id -> entry dict
    latents: dict            # id -> (2, M) int64
    deep: dict               # id -> (2M,) float32
    shallow: dict            # id -> (2N,) float32
    rover_export: bool
    images_dir: Path = None  # default: path/images (a stored library borrows the default's images)

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.library_id)

    def ids_for(self, modality: str):
        return [i for i, e in self.entries.items() if e["modality"] == modality]

    def check_model(self, name: str, model_id: bytes, m: int = None):
        """The library was built by this model, and every entry's statistics have its latent width m."""
        if self.models.get(name) != model_id.hex():
            raise LibraryError(f"library {self.path} was built for {name} model {self.models.get(name)}, "
                               f"not {model_id.hex()}; rebuild it with remac-lib build")
        widths = sorted({self.latents[i].shape[1] for i in self.ids_for(name)})
        if m is not None and widths != [m]:
            raise LibraryError(f"library {self.path}: {name} entries have latent widths {widths}, the model "
                               f"has {m}; the library is damaged, rebuild it with remac-lib build")

    def stats16(self, entry_id: str) -> np.ndarray:
        self._require(entry_id)
        return self.latents[entry_id]

    def image_path(self, entry_id: str) -> Path:
        """Path of a reference image, after checking it is present and unchanged (sha256)."""
        self._require(entry_id)
        if self.rover_export:
            raise LibraryError(f"library {self.path} is a rover export without reference images; "
                               "decode with the full library")
        path = (self.images_dir or self.path / "images") / f"{entry_id}.png"
        try:
            data = path.read_bytes()
        except OSError:
            raise LibraryError(f"library {self.path}: reference image {entry_id} is missing ({path})") from None
        if hashlib.sha256(data).hexdigest() != self.entries[entry_id]["sha256"]:
            raise LibraryError(f"library {self.path}: reference image {entry_id} does not match its sha256 "
                               "(modified or damaged)")
        return path

    def _require(self, entry_id):
        if entry_id not in self.entries:
            raise LibraryError(f"library {self.path} ({self.library_id}) has no reference {entry_id}")


def load(path=None, images=None) -> Library:
    """A library directory (default: the shipped one). images: where its reference images are, when
    not in path/images (a release's library in a model store uses the default library's)."""
    path = Path(path) if path is not None else DEFAULT
    if not path.is_dir():
        raise LibraryError(f"reference library {path} is not a directory")
    try:
        meta = json.loads((path / "library.json").read_text())
    except FileNotFoundError:
        raise LibraryError(f"{path} is not a reference library (no library.json)") from None
    except (OSError, ValueError) as exc:
        raise LibraryError(f"{path}/library.json is unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LibraryError(f"{path}/library.json is not a REMAC library")
    if meta.get("version") != VERSION:
        raise LibraryError(f"{path}: library version {meta.get('version')!r} is not supported (need {VERSION})")
    try:
        entries = {e["id"]: e for e in meta["entries"]}
        models = dict(meta["models"])
        if not all(isinstance(e, dict) and {"id", "sha256", "modality"} <= e.keys() for e in meta["entries"]):
            raise KeyError("entry without id/sha256/modality")
        latents = {k: a.astype(np.int64) for k, a in npz.read_all(path / "latents.npz").items()}
        descriptors = npz.read_all(path / "descriptors.npz")
        deep = {k[5:]: a for k, a in descriptors.items() if k.startswith("deep/")}
        shallow = {k[8:]: a for k, a in descriptors.items() if k.startswith("shallow/")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LibraryError(f"{path}: library files are incomplete or damaged ({exc})") from None
    missing = [i for i in entries if i not in latents or i not in deep or i not in shallow]
    if missing:
        raise LibraryError(f"{path}: no latents/descriptors for entries {', '.join(missing[:5])}")
    bad = [i for i, a in latents.items() if a.ndim != 2 or a.shape[0] != 2]
    if bad:
        raise LibraryError(f"{path}: latent statistics of {bad[0]} have shape {latents[bad[0]].shape}, expected (2, M)")
    if compute_library_id(models, meta["entries"], latents) != meta.get("library_id"):
        raise LibraryError(f"{path}: contents do not match library ID {meta.get('library_id')} (modified?)")
    return Library(path, meta["library_id"], models, entries, latents, deep, shallow,
                   bool(meta.get("rover_export")), Path(images) if images is not None else None)


def write(path: Path, models: dict, entries: list, latents: dict, deep: dict, shallow: dict,
          rover_export: bool = False) -> str:
    """Write library.json, latents.npz and descriptors.npz (images are the caller's). -> library ID."""
    path.mkdir(parents=True, exist_ok=True)
    library_id = compute_library_id(models, entries, latents)
    np.savez(path / "latents.npz", **{k: v.astype(np.int32) for k, v in latents.items()})
    desc = {f"deep/{k}": v.astype(np.float32) for k, v in deep.items()}
    desc.update({f"shallow/{k}": v.astype(np.float32) for k, v in shallow.items()})
    np.savez(path / "descriptors.npz", **desc)
    meta = {"format": FORMAT, "version": VERSION, "library_id": library_id, "models": models,
            "rover_export": rover_export, "entries": sorted(entries, key=lambda e: e["id"])}
    (path / "library.json").write_text(json.dumps(meta, indent=1) + "\n")
    return library_id


def ranked(query: np.ndarray, candidates: dict) -> list:
    """Entry ids ordered from nearest to farthest from `query` (per-dimension standardized L2)."""
    ids = sorted(candidates)
    mat = np.stack([candidates[i] for i in ids]).astype(np.float64)
    std = mat.std(axis=0) + 1e-6
    d = (((mat - query[None].astype(np.float64)) / std) ** 2).sum(axis=1)
    return [ids[i] for i in np.argsort(d, kind="stable")]


def nearest(query: np.ndarray, candidates: dict) -> str:
    return ranked(query, candidates)[0]
