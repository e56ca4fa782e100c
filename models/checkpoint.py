"""Training checkpoints on disk: one copy of each tensor in the tree.

A run's checkpoint (models/weights/<run>.safetensors) holds everything: the bitstream side in fp32
(encoder, integer h_s, priors, gains, fitted coder tables) and the decoder in fp16. A *shipped*
checkpoint (grey, colour) keeps its decoder only in the ground artifact beside it
(<name>_decoder.safetensors, which the ground loads): training.export strips the copy, and
read_checkpoint merges it back. Only safetensors and torch here: a GPU job imports this.
"""
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

WEIGHTS = Path(__file__).parent / "weights"       # the checkpoints (in the repository) and the ground artifacts


def decoder_sibling(path: Path) -> Path:
    """models/weights/grey.safetensors -> models/weights/grey_decoder.safetensors (the ground artifact)."""
    path = Path(path)
    return path.with_name(f"{path.stem}_decoder.safetensors")


def with_decoder(state: dict, path: Path) -> dict:
    """A shipped checkpoint keeps its decoder only once, in the ground artifact beside it (export
    strips the copy): merge those decoder.* tensors back into `state` when it has none."""
    sibling = decoder_sibling(path)
    if any(k.startswith("decoder.") for k in state) or not sibling.exists():
        return state
    return state | {k: v for k, v in load_file(str(sibling)).items() if k.startswith("decoder.")}


def read_checkpoint(path: Path) -> dict:
    """Every tensor of a training checkpoint, decoder included (with_decoder)."""
    return with_decoder(load_file(str(path)), path)


def strip_decoder(path: Path):
    """Drop the decoder.* tensors of a shipped checkpoint (kept in its ground artifact); metadata stays."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("decoder.")}
    save_file(state, str(path) + ".tmp", metadata=meta)
    os.replace(str(path) + ".tmp", path)
