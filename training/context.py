"""Channel context for a trained model: rate-only training of the slice nets, transforms frozen.

    python -m training.context CHECKPOINT --slices 0,16,64,256 --minutes 15 [-o OUT]

Adds (or goes on training) HyperSynthesis.ctx of CHECKPOINT (default: in place): the encoder,
hyperprior and decoder stay as they are, so y, z and the hyperprior's (mu16, idx) do not move;
only the corrections of slices k >= 1 learn, from the fused hyperprior features and the rounded
latents of the slices before them (models.hyper.context_net, bitstream.latent). The objective is
the rate of y alone (uniform-noise proxy) at random qualities; the latents of a few hundred
training crops are computed once, so a step costs h_a, h_s and the slice nets only.

Prints and logs (training/logs/<stem>_context.csv: kind, step, seconds, % at q10, q50, q90)
the rate change on validation crops at q 10/50/90 with rounded latents: what the context saves,
before the real coder confirms it.

    python -m training.context CHECKPOINT --ablate 6

measures that with the real coder instead (no training): the checkpoint with and without its
slices, each calibrated and exported, coded by training.rank's path on the first N images
of each val set; prints the BD-rate of context vs none per set.
"""
import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from remac.bitstream import spec
from remac.models.intnet import round_half_up
from remac.models.codec import REMAC, architecture, load_weights
from training import DATA, LOGS
from remac.models.checkpoint import read_checkpoint
from training.data import load_set

CROPS = 800             # training crops whose latents are cached
PATCH = 8               # latent px per side of a training patch (128 image px)


def y_bits(model, y, q, noisy: bool) -> torch.Tensor:
    """(B,) bits of y (with the model's context, if any) at qualities q (B,)."""
    y_g, z, _, _ = model.gained_latents(y, q)
    z_hat = round_half_up(z).clamp(-spec.Z_CLIP, spec.Z_CLIP)
    r = torch.zeros(y.shape[0], 2 * model.m + 1)
    mu16, idx = model.hyper.params(z_hat, r, y_g)
    return model.latent_bits(y_g, mu16, idx, noisy)[0]


def with_context(state: dict, slices) -> REMAC:
    """The checkpoint's model with context slices `slices` (kept where it has them already)."""
    arch = architecture(state)
    if arch["slices"] is None:
        arch["slices"] = tuple(slices)
    model = REMAC(1, **arch)
    missing, _ = load_weights(model, state, strict=False)
    assert all(k.startswith("hyper.ctx.") for k in missing), missing
    return model


def latents(model, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.encoder.analysis(images[i:i + batch].float() / 255)[0]
                          for i in range(0, len(images), batch)])


def saving(model, val_y, qualities=(10, 50, 90)) -> dict:
    """{q: % rate change of y on the validation latents, context on vs off (rounded latents)}."""
    out = {}
    with torch.no_grad():
        for q in qualities:
            qq = torch.full((len(val_y),), float(q))
            on = y_bits(model, val_y, qq, noisy=False).sum().item()
            ctx, model.hyper.ctx = model.hyper.ctx, None
            off = y_bits(model, val_y, qq, noisy=False).sum().item()
            model.hyper.ctx = ctx
            out[q] = 100 * (on / off - 1)
    return out


def ablate(checkpoint: Path, limit: int, data=DATA):
    """Real-coder BD-rate (%) of `checkpoint` with vs without its context slices, per val set."""
    import shutil
    import tempfile
    from training.calibrate import calibrate
    from training.rank import QUALITIES, VAL_SETS, bd, candidate_model, rd_curve, set_channels
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        variants = {"with": tmp / "with.safetensors", "without": tmp / "without.safetensors"}
        shutil.copyfile(checkpoint, variants["with"])
        with safe_open(str(checkpoint), framework="pt") as f:
            meta = f.metadata()
        save_file({k: v for k, v in load_file(str(checkpoint)).items() if not k.startswith("hyper.ctx.")},
                  str(variants["without"]), metadata=meta)
        models = {}
        for k, path in variants.items():
            calibrate("grey", str(data), weights=str(path))
            models[k] = candidate_model("grey", path, tmp / k)
        out = {}
        for folder in VAL_SETS["grey"]:
            paths = sorted(p for p in (Path(data) / folder).iterdir() if p.is_file())[:limit]
            curves = {k: rd_curve(m, em, paths, QUALITIES, set_channels(folder)) for k, (m, em) in models.items()}
            out[folder] = bd(curves["without"], curves["with"])
            print(f"{folder}: context vs none {out[folder]:+.2f}% | with: "
                  + " ".join(f"{r:.3f}/{p:.2f}" for r, p in curves["with"]) + " | without: "
                  + " ".join(f"{r:.3f}/{p:.2f}" for r, p in curves["without"]), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--slices", default="0,16,64,256")
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("-o", "--out", type=Path, help="default: CHECKPOINT, in place")
    ap.add_argument("--ablate", type=int, metavar="N", help="measure with the real coder on N images per val set")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.ablate:
        ablate(args.checkpoint, args.ablate, args.data)
        return
    state = read_checkpoint(args.checkpoint)
    model = with_context(state, [int(v) for v in args.slices.split(",")])
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("hyper.ctx."))
    cfg_folders = ["train/gray", "train/gray_native", "train/color"]
    images, _ = load_set(args.data, cfg_folders, 1)
    pick = torch.from_numpy(np.random.default_rng(0).choice(len(images), min(CROPS, len(images)), replace=False))
    train_y = latents(model, images[pick])
    val_y = latents(model, load_set(args.data, ["val/gray", "val/gray_native"], 1)[0])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    log_path = LOGS / f"{args.checkpoint.stem}_context.csv"
    with open(log_path, "a", newline="") as f:
        log = csv.writer(f)
        before = saving(model, val_y)
        log.writerow(["val", 0, 0.0, *[round(v, 3) for v in before.values()]])
        print(f"slices {model.hyper.slices}: rate change on val at q10/50/90 " + " ".join(f"{v:+.2f}%" for v in before.values()))
        start, step, rng = time.time(), 0, np.random.default_rng(1)
        while time.time() - start < args.minutes * 60:
            i = torch.from_numpy(rng.integers(0, len(train_y), 16))
            r0, c0 = rng.integers(0, train_y.shape[2] - PATCH + 1), rng.integers(0, train_y.shape[3] - PATCH + 1)
            y = train_y[i][:, :, r0:r0 + PATCH, c0:c0 + PATCH]
            frac = (time.time() - start) / (args.minutes * 60)
            for group in opt.param_groups:      # the last 40 % at a tenth: the estimates settle
                group["lr"] = args.lr * (1.0 if frac < 0.6 else 0.1)
            loss = y_bits(model, y, torch.rand(16) * 100, noisy=True).mean() / (16 * PATCH) ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 500 == 0:
                now = saving(model, val_y)
                log.writerow(["val", step, round(time.time() - start, 1), *[round(v, 3) for v in now.values()]])
                f.flush()
                print(f"step {step}: {loss.item():.4f} bpp (y, training patches); val q10/50/90 "
                      + " ".join(f"{v:+.2f}%" for v in now.values()), flush=True)
    out = args.out or args.checkpoint
    with safe_open(str(args.checkpoint), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(args.checkpoint))
    tensors.update({k: v.detach().contiguous() for k, v in model.state_dict().items() if k.startswith("hyper.ctx.")})
    save_file(tensors, str(out) + ".tmp", metadata={**meta, "context_slices": ",".join(map(str, model.hyper.slices)),
                                                     "context_steps": str(step)})
    os.replace(str(out) + ".tmp", out)
    print(f"wrote {out}: slices {model.hyper.slices}, {step} steps")


if __name__ == "__main__":
    main()
