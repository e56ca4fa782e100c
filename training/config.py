"""Training configs: training/configs/*.json, each a base plus overrides.

A config may name `"base": "OTHER.json"` (a file beside it, resolved the same way): it is that
config updated by its own keys. load_config is the one reader of configs (training.train,
training.pack, training.data.train_folders, scripts/gpu_train.sh)."""
import json
from pathlib import Path


def load_config(path) -> dict:
    """A config file -> its keys, its base's (if any) first, updated by its own."""
    path = Path(path)
    with open(path) as f:
        own = json.load(f)
    base = own.pop("base", None)
    return own if base is None else {**load_config(path.parent / base), **own}
