"""A compact training-data pack for a GPU burst: `python -m training.pack CONFIG -o .pack/grey.npz`.

The GPU machine receives the tracked tree plus named ignored paths, 64 MiB in all, and has no
../shared/data. A pack holds a subset of a config's training images (and 8 validation images)
deflate-compressed (zlib: the GPU machine has numpy and torch but maybe not Pillow), drawn round-robin over the training folders and groups so a small pack
still spans the data's variety, up to `--mib` MiB (default: what the tracked tree leaves of the 64 MiB, room_mib):

    bytes   (S,) uint8      every image's zlib-compressed (C,256,256) uint8 samples, back to back
    offsets (N+1,) int64    image i is bytes[offsets[i]:offsets[i+1]]
    groups  (N,) int64      reference groups (training.data.load_set)
    is_val  (N,) bool       the validation images
    channels ()             1 or 3

`load_pack` returns the (N,C,256,256) uint8 images as load_set does; `python -m training.train
CONFIG --pack PACK` trains from it instead of ../shared/data.
"""
import argparse
import os
import subprocess
import zlib
from itertools import zip_longest

import numpy as np
import torch

from training import DATA, ROOT
from training.config import load_config
from training.data import load_set

DEVICE_MIB = 64             # the device tool carries the tracked tree plus named paths, this much in all
PACK_MARGIN_MIB = 1.0       # npz headers, arrays beside the image bytes, files added before the run


def tracked_bytes(root=ROOT) -> int:
    """Bytes of the files git tracks under `root` (what the device machine receives besides carry)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return sum(os.path.getsize(os.path.join(root, n)) for n in names.decode().split("\0")
               if n and os.path.isfile(os.path.join(root, n)))


def room_mib(root=ROOT) -> float:
    """MiB a pack may take so the device copy (tracked tree + pack) stays within DEVICE_MIB."""
    return DEVICE_MIB - PACK_MARGIN_MIB - tracked_bytes(root) / 2 ** 20


def _deflate(image: np.ndarray) -> bytes:
    """(C,256,256) uint8 -> zlib bytes of its samples."""
    return zlib.compress(np.ascontiguousarray(image).tobytes(), 9)


def build(cfg: dict, data_dir=DATA, mib: float = 16.0) -> dict:
    """-> the pack's arrays (see the module docstring), at most `mib` MiB of image bytes."""
    val, _ = load_set(str(data_dir), cfg["val_folders"], cfg["channels"], limit=8)
    per_folder = [load_set(str(data_dir), [f], cfg["channels"]) for f in cfg["train_folders"]]
    order = []          # round-robin over folders, and within a folder over its groups
    for k, (images, groups) in enumerate(per_folder):
        by_group = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        order.append([(images[i], (k, groups[i])) for batch in zip_longest(*by_group.values())
                      for i in batch if i is not None])
    blobs = [_deflate(v) for v in val.numpy()]
    groups_out, is_val = [(-1, n) for n in range(len(blobs))], [True] * len(blobs)
    size, budget = sum(map(len, blobs)), mib * 2 ** 20
    for image, group in (item for row in zip_longest(*order) for item in row if item is not None):
        blob = _deflate(image.numpy())
        if size + len(blob) > budget:
            break
        blobs.append(blob), groups_out.append(group), is_val.append(False)      # groups unique per folder
        size += len(blob)
    return arrays(blobs, groups_out, is_val, cfg["channels"])


def arrays(blobs, groups, is_val, channels) -> dict:
    """Compressed images, any hashable group keys, validation flags -> the pack's arrays."""
    ids = {g: n for n, g in enumerate(sorted(set(groups), key=repr))}
    return {"bytes": np.frombuffer(b"".join(blobs), dtype=np.uint8),
            "offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
            "groups": np.array([ids[g] for g in groups], dtype=np.int64),
            "is_val": np.array(is_val, dtype=bool), "channels": np.array(channels)}


def write(path: str, images: torch.Tensor, groups, val: torch.Tensor) -> str:
    """Pack (N,C,256,256) uint8 training images with their groups and (V,C,256,256) validation
    images (tests and small experiments; `build` draws from ../shared/data)."""
    blobs = [_deflate(v) for v in val.numpy()] + [_deflate(i) for i in images.numpy()]
    save(path, arrays(blobs, [(-1, n) for n in range(len(val))] + list(groups),
                      [True] * len(val) + [False] * len(images), images.shape[1]))
    return path


def save(path: str, pack: dict):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path + ".tmp.npz", **pack)
    os.replace(path + ".tmp.npz", path)


def load_pack(path: str):
    """-> (train images (N,C,256,256) uint8 tensor, groups list, val images (V,C,256,256) uint8)."""
    with np.load(path) as npz:
        data, offsets, groups, is_val, channels = (npz[k] for k in ("bytes", "offsets", "groups", "is_val", "channels"))
    images = [np.frombuffer(zlib.decompress(data[a:b].tobytes()), dtype=np.uint8).reshape(int(channels), 256, 256)
              for a, b in zip(offsets[:-1], offsets[1:])]
    images = torch.from_numpy(np.stack(images))
    is_val = torch.from_numpy(is_val)
    return images[~is_val].contiguous(), groups[~is_val.numpy()].tolist(), images[is_val].contiguous()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--mib", type=float, help="image bytes budget (default: what the device copy leaves, room_mib)")
    args = ap.parse_args(argv)
    pack = build(load_config(args.config), args.data, args.mib or room_mib())
    save(args.output, pack)
    print(f"{args.output}: {len(pack['groups']) - pack['is_val'].sum()} training + {pack['is_val'].sum()} "
          f"validation images, {os.path.getsize(args.output) / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main()
