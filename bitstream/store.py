"""The model store: every released model stays decodable after a newer one becomes the default.

A stream names its model ID (encoder + entropy model) and its library ID; retraining changes both.
The ground therefore keeps each earlier release in a store, a directory of model directories:

    STORE/<model_id hex>/
        model.json, entropy.npz        the integer entropy model (bitstream.modelfile.load_dir)
        decoder.safetensors            the ground's ref-decoder for it (models.ground)
        library/                       the reference library as that release built it:
                                       library.json, latents.npz, descriptors.npz; its images are
                                       the current default library's (content-addressed, checked)
        encoder.onnx, encoder.int8.onnx   optional: what a rover needs to keep running this model
        release.json                   {"sequence": n}: the order releases were filed in (prune)

The shipped ground store is models/store/ (models.ground.STORE); `remac-decode --models DIR` adds
more. `release` files the current default model into a store before a promotion replaces it;
`prune` keeps the newest releases only (a GPU job receives the tracked tree plus its data pack,
64 MiB in all, so the tree must stay small) and `scripts/restore_release.sh MODEL_ID` brings a pruned one back
from the repository's history.
"""
import json
import shutil
from pathlib import Path

STORE_FILES = ("model.json", "entropy.npz", "decoder.safetensors", "encoder.onnx", "encoder.int8.onnx")
LIBRARY_FILES = ("library.json", "latents.npz", "descriptors.npz")


def find_model(model_id: bytes, stores) -> Path:
    """The model directory of `model_id` in the first store that has it, else None."""
    for store in stores:
        folder = Path(store) / model_id.hex()
        if (folder / "model.json").is_file():
            return folder
    return None


def find_library(library_id: str, stores) -> Path:
    """A stored library directory whose library.json names `library_id`, else None."""
    for store in stores:
        for meta in sorted(Path(store).glob("*/library/library.json")):
            try:
                if json.loads(meta.read_text()).get("library_id") == library_id:
                    return meta.parent
            except (OSError, ValueError):
                continue
    return None


def release(store: Path, model_id: str, files: dict, library: Path = None) -> Path:
    """Copy one release into `store`/<model_id>/: files {store file name: source path} (see
    STORE_FILES; missing sources are skipped), plus the library's metadata without images.
    Idempotent; -> the model directory."""
    folder = Path(store) / model_id
    sequence = max((sequence_of(f) for f in Path(store).glob("*/model.json")), default=0) + 1
    unknown = set(files) - set(STORE_FILES)
    if unknown:
        raise ValueError(f"not store files: {sorted(unknown)}")
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        if src is not None and Path(src).is_file():
            shutil.copyfile(src, folder / name)
    if library is not None:
        (folder / "library").mkdir(exist_ok=True)
        for name in LIBRARY_FILES:
            shutil.copyfile(Path(library) / name, folder / "library" / name)
    record = folder / "release.json"
    if not record.is_file():        # a release filed again keeps its place in the order
        record.write_text(json.dumps({"sequence": sequence}) + "\n")
    return folder


def sequence_of(model_json: Path) -> int:
    """The release sequence number beside a store entry's model.json (0 when it has none)."""
    try:
        return int(json.loads((Path(model_json).parent / "release.json").read_text())["sequence"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def prune(store: Path, keep: int) -> list:
    """Remove all but the `keep` most recently filed releases from `store`. -> removed model IDs (hex)."""
    entries = sorted(Path(store).glob("*/model.json"), key=sequence_of)
    removed = [m.parent for m in entries[:max(len(entries) - keep, 0)]]
    for folder in removed:
        shutil.rmtree(folder)
    return [f.name for f in removed]
