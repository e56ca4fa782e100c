"""Training data: pre-decoded uint8 crops in RAM, each paired with a reference image.

A reference for image i is another image of the same group (same sol for Navcam, same source
frame / panorama otherwise): the "same terrain, another day/view" situation the library serves.
Images alone in their group get a random image as reference (teaches robustness to mismatch).
"""
import csv
import itertools
import math
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from remac.models.codec import REMAC
from training import CONFIGS
from training.config import load_config


def _group_key(row):
    return row["sol"] if row["path"].startswith("train/gray/") else row["source_path"]


RECIPES = {"grey": "grey_lap_fine.json"}       # each shipped model's training recipe


def train_folders(name: str) -> list:
    """The training folders (under ../shared/data) of a shipped model, from its recipe (RECIPES);
    the same for every stage of its training, and used to calibrate its entropy floors and int8 encoder."""
    if name not in RECIPES:
        raise SystemExit(f"no training recipe for model {name!r} (training.data.RECIPES: {sorted(RECIPES)})")
    return load_config(CONFIGS / RECIPES[name])["train_folders"]


def load_frames(data_dir, folder, channels, side=512, limit=2):
    """The first `limit` images of `folder` at their own size, cut to their top-left side x side ->
    (N,C,side,side) float in [0,1]: the training log's whole-frame check (the 256-px validation
    crops are too small to show a decoder that only works on training-sized latents)."""
    from PIL import Image
    paths = sorted(p for p in (Path(data_dir) / folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".webp"))
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for path in paths[:limit]:
        a = np.asarray(Image.open(path).convert(mode), dtype=np.float32)
        a = (a[..., None] if a.ndim == 2 else a)[:side, :side]
        a = np.pad(a, ((0, side - a.shape[0]), (0, side - a.shape[1]), (0, 0)), mode="edge")
        arrays.append(a.transpose(2, 0, 1) / 255)
    return torch.from_numpy(np.stack(arrays))


def _in_folder(path: str, folder: str) -> bool:
    """A MANIFEST.csv path lies under `folder` (with or without a trailing slash)."""
    return path.startswith(folder.rstrip("/") + "/")


def _site_rows(data_dir, split) -> list:
    """sites/<split>'s frames that are not byte-identical copies of a file elsewhere in the data
    (sites/index.csv's also_in is empty), as MANIFEST-like rows; the group is the rover position."""
    index = os.path.join(data_dir, "sites", "index.csv")
    return [{"path": f"sites/{r['path']}", "source_path": f"site:{r['site']}", "sol": r["sol"],
             "width": "256", "height": "256"}
            for r in csv.DictReader(open(index)) if r["split"] == split and not r["also_in"]]


def _manifest_rows(data_dir, folders, limit=None) -> list:
    """The MANIFEST.csv rows (dicts) of the images in `folders` that are at least 128 x 128;
    a folder sites/train or sites/val reads sites/index.csv instead (_site_rows)."""
    rows = list(csv.DictReader(open(os.path.join(data_dir, "MANIFEST.csv"))))
    rows = [r for r in rows if any(_in_folder(r["path"], f) for f in folders)]
    rows += [r for f in folders if f.rstrip("/").startswith("sites/") for r in _site_rows(data_dir, f.rstrip("/")[6:])]
    rows = [r for r in rows if int(r["width"]) >= 128 and int(r["height"]) >= 128]
    return rows[:limit] if limit else rows


def _renders_of(rows, renders: dict) -> list:
    """(row, folder) for each extra colour rendering load_set adds: renders[folder] per image of
    that folder, in row order, after all the originals."""
    return [(r, f) for f, n in (renders or {}).items() for r in rows if _in_folder(r["path"], f) for _ in range(int(n))]


def folder_weights(data_dir, folders, weights: dict, renders: dict = None, channels: int = 1) -> list:
    """Per-image draw weights for load_set(data_dir, folders, channels, ..., renders)'s images, in its
    order: the weight of the image's folder in `weights` ({folder: weight}), 1 for folders not named."""
    rows = _manifest_rows(data_dir, folders)
    renders = renders if channels == 1 else None        # load_set renders luma only
    weight = lambda r: next((float(w) for f, w in weights.items() if _in_folder(r["path"], f)), 1.0)
    return [weight(r) for r in rows] + [weight(r) for r, _ in _renders_of(rows, renders)]


def load_set(data_dir, folders, channels, limit=None, renders: dict = None, seed: int = 0):
    """-> images (N,C,256,256) uint8 tensor, groups list[int] of length N.

    renders ({folder: n}, grey only): n extra copies of each colour image of that folder, each the
    luma (BT.601, as PIL's "L") of the image through another random processing pipeline
    (render_colour: white balance, saturation, hue, resampling, sharpening), appended after the
    originals in the same groups. Luma depends on the pipeline: a model that only saw one
    pipeline's luma trails on another's (held-out Mastcam luma: +15 % vs AVIF)."""
    from PIL import Image       # here, not at the top: a GPU job reads a pack and may lack Pillow
    rows = _manifest_rows(data_dir, folders, limit)
    mode = "L" if channels == 1 else "RGB"
    arrays, keys = [], []

    def read(r, m):
        im = Image.open(os.path.join(data_dir, r["path"])).convert(m)
        return np.asarray(im.resize((256, 256)) if im.size != (256, 256) else im)

    for r in rows:
        arrays.append(read(r, mode).reshape(256, 256, channels))
        keys.append(_group_key(r))
    rng = random.Random(seed)
    for r, _ in (_renders_of(rows, renders) if channels == 1 else []):
        rgb = render_colour(torch.from_numpy(read(r, "RGB").astype(np.float32) / 255).permute(2, 0, 1), rng)
        luma = torch.tensordot(torch.tensor([0.299, 0.587, 0.114]), rgb, 1)
        arrays.append((luma * 255).round().clamp(0, 255).to(torch.uint8).numpy()[..., None])
        keys.append(_group_key(r))
    ids = {k: i for i, k in enumerate(sorted(set(keys)))}
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, [ids[k] for k in keys]


def klt_basis(images, block: int = 16, patches: int = 200_000, seed: int = 0) -> torch.Tensor:
    """The orthonormal KLT of `block` x `block` patches of (N,C,H,W) uint8 images, centred at 1/2
    as KLTEncoder centres its input: -> (C*block^2, C*block^2) float32, one basis vector per row,
    strongest first, each row's largest-magnitude entry positive (a reproducible sign)."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = images.shape
    idx = torch.randint(0, n, (patches,), generator=g)
    top = torch.randint(0, h - block + 1, (patches,), generator=g)
    left = torch.randint(0, w - block + 1, (patches,), generator=g)
    moment = torch.zeros(c * block * block, c * block * block, dtype=torch.float64)
    for s in range(0, patches, 10_000):
        rows = [images[i, :, t:t + block, l:l + block] for i, t, l in
                zip(idx[s:s + 10_000].tolist(), top[s:s + 10_000].tolist(), left[s:s + 10_000].tolist())]
        p = torch.stack(rows).reshape(len(rows), -1).double() / 255 - 0.5
        moment += p.T @ p
    _, vectors = torch.linalg.eigh(moment)              # ascending eigenvalues
    basis = vectors.flip(1).T.contiguous()              # rows, strongest first
    sign = torch.sign(basis.gather(1, basis.abs().argmax(1, keepdim=True)))
    return (basis * sign).float()


def nearest_others(descriptors, k: int = 4) -> np.ndarray:
    """(N, D) descriptors -> (N, k) indices of each row's k nearest other rows (squared L2)."""
    d = np.asarray(descriptors, dtype=np.float64)
    sq = (d * d).sum(1)
    dist = sq[:, None] + sq[None, :] - 2 * d @ d.T
    np.fill_diagonal(dist, np.inf)
    return np.argsort(dist, axis=1)[:, :k]


@torch.no_grad()
def rover_descriptors(encoder, images, batch: int = 32, device="cpu") -> np.ndarray:
    """(N,C,256,256) uint8 -> (N, 2M): channel means and mean |deviations| of the ungained latent,
    as rover_encoder.analysis.deep_descriptor computes them on the rover."""
    out = []
    for s in range(0, len(images), batch):
        y, _ = encoder.analysis(images[s:s + batch].to(device).float() / 255)
        out.append(REMAC.latent_stats(y).flatten(1))      # (B, 2M): means, then deviations
    return torch.cat(out).float().cpu().numpy()


def render_colour(x, r):
    """(3,H,W) float in [0,1], random.Random r -> the same scene through another processing pipeline: white balance
    (per-channel gains), saturation, a hue rotation about the grey axis, and now and then a 2x
    resampling or a sharpening. Mars colour differs more between pipelines than in texture (a
    model trained on one pipeline's colour was +67% vs JPEG 2000 on another's)."""
    x = x * torch.tensor([r.uniform(0.75, 1.3), r.uniform(0.85, 1.15), r.uniform(0.7, 1.35)])[:, None, None]
    grey = x.mean(0, keepdim=True)
    x = grey + (x - grey) * r.uniform(0.3, 1.4)
    angle = math.radians(r.uniform(-20, 20))       # Rodrigues rotation about (1,1,1)/sqrt(3)
    k = torch.full((3, 3), (1 - math.cos(angle)) / 3)
    k += torch.eye(3) * math.cos(angle)
    k += math.sin(angle) / math.sqrt(3) * torch.tensor([[0., -1, 1], [1, 0, -1], [-1, 1, 0]])
    x = torch.einsum("ij,jhw->ihw", k, x)
    u = r.random()
    if u < 0.15:                                    # resampled: detail of a 2x larger frame
        x = F.interpolate(F.avg_pool2d(x[None], 2), scale_factor=2, mode="bilinear", align_corners=False)[0]
    elif u < 0.3:                                   # sharpened (unsharp mask)
        x = x + r.uniform(0.3, 1.0) * (x - F.avg_pool2d(x[None], 3, 1, 1, count_include_pad=False)[0])
    return x.clamp(0, 1)


class PairSampler:
    """Draws (crop, reference crop) batches as float tensors in [0,1].

    The reference is a random `ref_crop` window of the reference image: its latent statistics and
    pyramid features are what the model learns from, and a window costs a quarter of a 256^2 image.
    """

    def __init__(self, images, groups, crop, seed=0, augment=True, ref_crop=None, descriptors=None, k=4,
                 weights=None, downsampled=0.0):
        """descriptors: optional (N, D) float array, the rover's recycled latent descriptor of each
        image; when given, an image's reference is one of its k nearest other images in that space
        (what the rover's library selection would pick), else another image of its group.
        augment: False, True (brightness/contrast/gamma on half the crops) or "colour" (those, then
        another pipeline's colour rendering: render_colour).
        weights: optional per-image draw weights (folder_weights), else every image equally often.
        downsampled: the share of crops cut from a 2x area-downsampled image at a random phase, where
        no JPEG 8x8 grid survives (raw rover frames have none; every source here has one)."""
        self.images, self.crop, self.augment, self.downsampled = images, crop, augment, downsampled
        self.cum_weights = None if weights is None else list(itertools.accumulate(weights))
        self.neighbours = None if descriptors is None else nearest_others(descriptors, k)
        self.ref_crop = ref_crop or crop
        self.rng = random.Random(seed)
        self.members = {}
        for i, g in enumerate(groups):
            self.members.setdefault(g, []).append(i)
        self.groups = groups

    def reference_of(self, i):
        if self.neighbours is not None:
            return int(self.rng.choice(self.neighbours[i]))
        others = [j for j in self.members[self.groups[i]] if j != i]
        return self.rng.choice(others) if others else self.rng.randrange(len(self.images))

    def _flip(self, t):
        if self.rng.random() < 0.5:
            t = t.flip(-1)
        if self.rng.random() < 0.5:
            t = t.flip(-2)
        return t

    def _photometric(self, x):
        if not self.augment or self.rng.random() < 0.5:
            return x
        gamma = self.rng.uniform(0.7, 1.4)
        contrast = self.rng.uniform(0.7, 1.5)
        bright = self.rng.uniform(-0.1, 0.1)
        x = ((x.clamp_min(0) ** gamma - 0.5) * contrast + 0.5 + bright).clamp(0, 1)
        return render_colour(x, self.rng) if x.shape[0] == 3 and self.augment == "colour" else x

    def batch(self, size, crop=None):
        """-> (size crops (size,C,crop,crop), their references); crop: this batch's side (default the
        sampler's; at most the images' 256)."""
        xs, refs = [], []
        n, _, h, w = self.images.shape
        crop = min(crop or self.crop, h, w)
        for _ in range(size):
            i = self.rng.randrange(n) if self.cum_weights is None else \
                self.rng.choices(range(n), cum_weights=self.cum_weights)[0]
            if 2 * crop < min(h, w) and self.rng.random() < self.downsampled:
                top, left = self.rng.randrange(h - 2 * crop + 1), self.rng.randrange(w - 2 * crop + 1)
                x = F.avg_pool2d(self.images[i, :, top:top + 2 * crop, left:left + 2 * crop].float()[None] / 255, 2)[0]
            else:
                top, left = self.rng.randrange(h - crop + 1), self.rng.randrange(w - crop + 1)
                x = self.images[i, :, top:top + crop, left:left + crop].float() / 255
            xs.append(self._photometric(self._flip(x)))
            rt, rl = self.rng.randrange(h - self.ref_crop + 1), self.rng.randrange(w - self.ref_crop + 1)
            ref = self.images[self.reference_of(i), :, rt:rt + self.ref_crop, rl:rl + self.ref_crop]
            refs.append(self._flip(ref.float() / 255))
        return torch.stack(xs), torch.stack(refs)
