"""Train one REMAC modality on CPU (or GPU when present): `python -m training.train CONFIG`.

Resumable: weights go to models/weights/<name>.safetensors (shipped), the optimizer state and
step to <ckpt-dir>/<name>.opt.pt; a restart continues from both. Logs one CSV row per 50 steps
and an evaluation row (rounded latents, estimated bpp, PSNR) every `eval_every` steps.
"""
import argparse
import csv
import json
import os
import time

import torch
from safetensors.torch import save_file

from remac.models.precision import CANDIDATES, autocast, choose_by_timing, cpu_info
from remac.models.codec import REMAC, LAMBDAS, architecture, latent_digest, load_weights
from training.surgery import extend_levels, with_lap, with_spatial, with_width
from remac.models.rover_nets import kernel_lap, lapped_kernel
from training import CKPT, DATA, LOGS, WEIGHTS
from training.config import load_config
from remac.models.checkpoint import read_checkpoint
from training.data import folder_weights, klt_basis, load_frames, load_set, PairSampler, rover_descriptors
from training.pack import load_pack

CHECKPOINT_MINUTES = 5      # also checkpoint at least this often (a chunk may be cut short)


def lambda_for_quality(q, lambdas=LAMBDAS):
    """Geometric interpolation of the level lambdas, matching REMAC.gains_for_quality."""
    logs = torch.log(torch.tensor(lambdas))
    t = q / 100.0 * (len(lambdas) - 1)
    lo = t.floor().clamp(0, len(lambdas) - 2).long()
    f = t - lo
    return torch.exp(logs[lo] * (1 - f) + logs[lo + 1] * f)


LAP_WARMUP = 100.0      # a widened kernel's new taps: second moment this many times the old taps' mean


def pad_moments(opt):
    """Adam moments saved for a smaller model: for a checkpoint with fewer quality levels
    (training.surgery.extend_levels) the new gain rows start with zero moments; for a block transform
    widened to a lapped one (training.surgery.with_lap) the new outer taps start with a zero first
    moment and LAP_WARMUP times the old taps' mean second moment (so do the new weights of a branch
    widened by training.surgery.with_width, most of which read a new channel), so their steps start ~10x
    smaller than lr and grow as that moment decays (x 0.37 per 1 000 steps): Adam moves every one
    of hundreds of new taps per coefficient by ~lr per step from the start otherwise (a zero second
    moment: ~3 lr; the old taps' mean: 27 steps cost 1.7 dB at q90); the others keep theirs."""
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key not in st or st[key].shape == p.shape:
                    continue
                if st[key].shape[1:] == p.shape[1:]:
                    extra = p.shape[0] - st[key].shape[0]
                    st[key] = torch.cat([st[key], st[key].new_zeros((extra, *p.shape[1:]))])
                elif st[key].shape[2:] == p.shape[2:]:      # a widened branch (with_width): old in the corner
                    old = st[key]
                    fill = LAP_WARMUP * old.mean() if key == "exp_avg_sq" else 0.0
                    st[key] = torch.full_like(p, float(fill))
                    st[key][:old.shape[0], :old.shape[1]] = old
                else:
                    old, lap = st[key], kernel_lap(p)
                    st[key] = lapped_kernel(old, lap)
                    if key == "exp_avg_sq":     # the new taps: LAP_WARMUP x the mean of each kernel's old ones
                        fill = LAP_WARMUP * old.mean((-2, -1), keepdim=True).expand_as(st[key])
                        st[key] = torch.where(lapped_kernel(torch.ones_like(old), lap) > 0, st[key], fill).contiguous()


def rd_loss(model, x, x_ref, q, ref_on, decoder_ref_on=None, noisy=True, x_ref_entropy=None, precision="fp32"):
    """precision: the float networks' arithmetic while training (models.precision); evaluation
    (noisy=False) always runs in fp32."""
    with autocast(precision if noisy else "fp32", x.device.type):
        out = model(x, x_ref, q, ref_on, decoder_ref_on=decoder_ref_on, noisy=noisy, x_ref_entropy=x_ref_entropy)
    pixels = x.shape[2] * x.shape[3]
    mse = ((out["x_hat"].float().clamp(0, 1) if not noisy else out["x_hat"].float()) - x).pow(2).mean((1, 2, 3))
    bpp = (out["bits_y"] + out["bits_z"]) / pixels
    loss = (lambda_for_quality(q, model.lambdas).to(x.device) * 255 ** 2 * mse + bpp).mean()
    return loss, mse, bpp


@torch.no_grad()
def evaluate(model, val, device, qualities=(10, 50, 90)):
    model.eval()
    rows = []
    x = val.to(device)
    for q in qualities:
        qq = torch.full((x.shape[0],), float(q), device=device)
        on = torch.ones(x.shape[0], dtype=torch.bool, device=device)
        ref = x.roll(1, 0)       # neighbouring val image as a stand-in reference
        _, mse, bpp = rd_loss(model, x, ref, qq, on, noisy=False)
        psnr = (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item()
        rows.append((q, bpp.mean().item(), psnr))
    model.train()
    return rows


FRAME_QUALITIES = (5, 20)   # low rates, where a decoder trained on small crops collapses on whole frames (q5: 26.6 -> 17.7 dB)


def batch_shape(cfg: dict, step: int) -> tuple:
    """(batch size, crop side) of training step `step`: the config's, except every
    cfg["large_every"]-th step, which takes crops of cfg["large_crop"] with as many pixels in all
    (a decoder trained only on 128-px crops decoded quantized latents of larger images up to
    13 dB worse at low rates: at 1/16 its dilated blocks had learned to lean on zero padding)."""
    large, every = cfg.get("large_crop"), cfg.get("large_every")
    if not large or not every or step % every:
        return cfg["batch"], cfg["crop"]
    return max(1, cfg["batch"] * cfg["crop"] ** 2 // large ** 2), large


def pick_precision(args, cfg, model, sampler, device):
    """-> (precision, {candidate: s/step}): --precision as given, or for auto (and --bench) the
    fastest candidate over a few forward+backward passes on one real batch (no optimizer update,
    gradients cleared afterwards, so training itself is unaffected)."""
    if args.precision != "auto" and not args.bench:
        return args.precision, {}
    x, ref = (t.to(device).to(memory_format=torch.channels_last) for t in sampler.batch(cfg["batch"]))
    q = torch.linspace(0, 100, x.shape[0], device=device)
    on = torch.ones(x.shape[0], dtype=torch.bool, device=device)

    def step(precision):
        loss, _, _ = rd_loss(model, x, ref, q, on, precision=precision)
        loss.backward()
        model.zero_grad(set_to_none=True)

    candidates = CANDIDATES if device.type == "cpu" else ("bf16",)
    return choose_by_timing(step, candidates)


def regroup(saved: dict, saved_names: list, opt, order: list) -> dict:
    """Map an optimizer state saved with its parameters in `saved_names` order (any grouping) onto
    the current groups, whose parameters are `order`; each group keeps its own lr_scale. Raises
    KeyError when a current parameter has no saved state (Adam then warm-starts)."""
    old_index = {name: i for i, name in enumerate(saved_names)}
    state = {new: saved["state"][old_index[name]] for new, name in enumerate(order)
             if old_index[name] in saved["state"]}
    groups, start = [], 0
    for g in opt.state_dict()["param_groups"]:
        n = len(g["params"])
        groups.append({**saved["param_groups"][0], "lr_scale": g["lr_scale"], "params": list(range(start, start + n))})
        start += n
    return {"state": state, "param_groups": groups}


def saved_order(state: dict, model_order: list, gain_names: tuple) -> list:
    """The parameter names of a saved optimizer state, in its order: stored in every state written
    now (so a state resumes into another grouping of the parameters); older states had one flat
    group (model order) or two (the non-gain parameters, then the gains)."""
    if "names" in state:
        return state["names"]
    if len(state["opt"]["param_groups"]) == 1:
        return model_order
    return [n for n in model_order if n not in gain_names] + [n for n in gain_names if n in model_order]


def model_for_config(cfg: dict, start_state: dict = None, decoder_extra: str = None, stage: str = "joint") -> REMAC:
    """The REMAC a config describes, grown to the checkpoint it starts from (start_state, if any): the
    checkpoint's channel-context slices, else the config's; its lapped transform, branch width and
    spatial flag where wider. decoder_extra ("n16,n8,n4,n2"): --decoder-extra, else the config's
    (2,2,2,2 for the decoder stage)."""
    extra = decoder_extra or cfg.get("decoder_extra", "2,2,2,2" if stage == "decoder" else "0,0,0,0")
    extra = tuple(int(v) for v in extra.split(","))
    wide = tuple(int(v) for v in cfg.get("decoder_wide", "0,0,0,0").split(","))
    start_arch = architecture(start_state) if start_state is not None else {}
    slices = start_arch["slices"] if start_state is not None else cfg.get("slices")
    return REMAC(cfg["channels"], decoder_extra=extra, decoder_wide=wide, rate_proxy=cfg.get("rate_proxy", "noise"),
                 arch=cfg.get("arch", "gdn"), m=cfg.get("m"), decoder_width=tuple(cfg.get("decoder_width", (128, 96, 64, 32))),
                 lambdas=cfg.get("lambdas"), slices=slices,
                 spatial=cfg.get("spatial", False) or (start_state is not None and "hyper.spatial" in start_state),
                 **({key: max(cfg.get(key, 0), start_arch.get(key, 0)) for key in ("lap", "decoder_lap", "encoder_width")}
                    if cfg.get("arch") == "klt" else {}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("config")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget for this run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-dir", default=str(CKPT))
    ap.add_argument("--log-dir", default=str(LOGS))
    ap.add_argument("--stage", choices=["joint", "decoder"], default="joint",
                    help="joint: encoder + entropy model + decoder; decoder: freeze the bitstream side and "
                         "train a heavier ref-decoder initialised from the joint one (no bitstream change)")
    ap.add_argument("--decoder-extra", default=None,
                    help="extra residual blocks at 1/16,1/8,1/4,1/2 (default: the config's decoder_extra; "
                         "2,2,2,2 for --stage decoder)")
    ap.add_argument("--run-name", default=None, help="checkpoint/log name (default: the config's name)")
    ap.add_argument("--init", action="append", default=[],
                    help="safetensors to start from when this run has no checkpoint yet; repeatable, "
                         "later files overlay earlier ones (e.g. a joint model, then its stage-2 decoder)")
    ap.add_argument("--no-entropy-refs", action="store_true", help="ablation: entropy model never sees a reference")
    ap.add_argument("--no-decoder-refs", action="store_true", help="ablation: decoder never sees a reference")
    ap.add_argument("--precision", choices=("auto",) + CANDIDATES, default="auto",
                    help="float arithmetic of the float networks: auto times a few steps of each and keeps "
                         "the fastest (bf16 is 2-4.5x faster with AMX, 13-25x slower without native bf16)")
    ap.add_argument("--bench", action="store_true", help="time each precision on this machine, print, exit")
    ap.add_argument("--pack", help="train from a data pack (training.pack) instead of --data")
    ap.add_argument("--out", help="write weights, optimizer state and log here (a GPU burst) instead of "
                                  "models/weights, .ckpt and the log folder; resumes from it when it holds the run")
    ap.add_argument("--batch", type=int, help="override the config's batch size")
    ap.add_argument("--crop", type=int, help="override the config's crop size")
    ap.add_argument("--steps", type=int, help="stop after this many steps of this run (a dry run)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    cfg.update({k: getattr(args, k) for k in ("batch", "crop") if getattr(args, k)})
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        args.ckpt_dir = args.log_dir = args.out
    weights_dir = args.out or str(WEIGHTS)
    torch.set_num_threads(args.threads)
    torch.manual_seed(cfg["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    if args.pack:
        images, groups, val = load_pack(args.pack)
    else:
        images, groups = load_set(args.data, cfg["train_folders"], cfg["channels"], renders=cfg.get("colour_renders"),
                                  seed=cfg["seed"])
        val, _ = load_set(args.data, cfg["val_folders"], cfg["channels"], limit=8)
    val = val.float()[:, :, :256, :256] / 255
    frames = None if args.pack or not cfg.get("frame_check") else \
        load_frames(args.data, cfg["frame_check"], cfg["channels"])
    print(f"{cfg['name']}: {len(images)} training images, {len(set(groups))} groups", flush=True)

    base_weights = os.path.join(WEIGHTS, f"{cfg['name']}.safetensors")
    run_name = args.run_name or (cfg["name"] if args.stage == "joint" else f"{cfg['name']}_heavy")
    run_name += "_noentref" * args.no_entropy_refs + "_nodecref" * args.no_decoder_refs
    weights = os.path.join(weights_dir, f"{run_name}.safetensors")
    # a promoted run: training.promote installs the run's checkpoint as the shipped one and
    # removes the run's copy (one copy in the tree); a run with a log but no checkpoint goes on from it
    shipped = os.path.join(weights_dir, f"{cfg['name']}.safetensors")
    promoted = (not os.path.exists(weights) and not args.init and run_name != cfg["name"]
                and os.path.exists(os.path.join(args.log_dir, f"{run_name}.csv")) and os.path.exists(shipped))
    source = weights if os.path.exists(weights) else shipped if promoted else None
    # channel-context slices (training.context adds them): the checkpoint's, else the config's
    start = source or (args.init[0] if args.init else None)
    start_state = read_checkpoint(start) if start else None
    if args.stage == "decoder":     # the bitstream side is always the shipped model's; a decoder-stage
        # checkpoint is an overlay (decoder + inverse gains, export.with_overlay) on top of it
        start_state = read_checkpoint(base_weights) | (start_state or {})
    model = model_for_config(cfg, start_state, args.decoder_extra, args.stage)
    if start_state is not None:     # a checkpoint with fewer quality levels than the model: extrapolate its gains
        start_state = extend_levels(start_state, len(model.lambdas))
        if model.hyper.has_spatial:     # config "spatial": channel 0 in passes from here on
            start_state = with_spatial(start_state)
        if model.arch == "klt":         # configs "lap", "decoder_lap", "encoder_width": lapped block
            # transforms and a wider correction branch from here on
            start_state = with_width(with_lap(start_state, model.encoder.lap, model.decoder.lap), model.encoder.width)
    if model.arch == "klt" and source is None and not args.init and args.stage == "joint":
        model.init_basis(klt_basis(images, patches=cfg.get("klt_patches", 200_000)))     # a fresh klt run starts as the linear block codec
    model = model.to(device).to(memory_format=torch.channels_last)
    if source is None:
        for path in args.init:      # missing keys (extra decoder blocks) keep their identity init
            state = start_state if path == start else read_checkpoint(path)
            missing, unexpected = load_weights(model, state, strict=False)
            print(f"initialised from {path} ({len(missing)} tensors not in it, {len(unexpected)} unused)", flush=True)
    if args.stage == "decoder":
        load_weights(model, read_checkpoint(base_weights), strict=False)
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("decoder.") or name == "log_inv_gain"
    # the per-quality gains move in log space: at the shared lr, Adam's bounded steps would need
    # ~10k steps to spread them over the rate range, so they learn 10x faster (gain_lr_scale)
    # "branch_lr_scale": the klt encoder's correction branch (encoder.rest) learns that much faster,
    # so channels grown from zero (with_width) move within a chunk of the fine-tuning lr
    gain_names = ("log_gain", "log_inv_gain")
    params = dict(model.named_parameters())
    model_order = [n for n, p in params.items() if p.requires_grad]
    branch_scale = cfg.get("branch_lr_scale", 1.0)
    branch = [n for n in model_order if n.startswith("encoder.rest.")] if branch_scale != 1.0 else []
    param_sets = [([n for n in model_order if n not in gain_names and n not in branch], 1.0),
                  (branch, branch_scale),
                  ([n for n in gain_names if n in model_order], cfg.get("gain_lr_scale", 10.0))]
    param_sets = [(names, scale) for names, scale in param_sets if names]
    order = [n for names, _ in param_sets for n in names]
    opt = torch.optim.Adam([{"params": [params[n] for n in names], "lr_scale": scale} for names, scale in param_sets],
                           lr=cfg["lr"])
    os.makedirs(args.ckpt_dir, exist_ok=True)
    os.makedirs(args.log_dir, exist_ok=True)
    opt_path = os.path.join(args.ckpt_dir, f"{run_name}.opt.pt")
    step, elapsed_before = 0, 0.0
    if source is not None:
        load_weights(model, start_state, strict=args.stage == "joint")
        from safetensors import safe_open
        with safe_open(source, framework="pt") as f:
            source_step = int(f.metadata().get("step", 0))
        state = torch.load(opt_path) if os.path.exists(opt_path) else None
        if state is not None and state["step"] != source_step:
            # the optimizer state of another checkpoint: a run that was not promoted, whose own
            # checkpoint was removed, goes on from the shipped weights: its moments belong to other
            # weights, so they are not reused
            print(f"optimizer state is of step {state['step']}, the weights of step {source_step}: "
                  f"Adam warm-starts", flush=True)
            state = None
        if state is not None:
            try:
                opt.load_state_dict(regroup(state["opt"], saved_order(state, model_order, gain_names), opt, order))
            except (ValueError, KeyError):      # other parameters (e.g. context slices added): start Adam afresh
                print("optimizer state does not match this model's parameters: Adam warm-starts", flush=True)
            pad_moments(opt)
            step, elapsed_before = state["step"], state["elapsed"]
        else:   # a fresh clone ships the weights but not the optimizer state: warm-start Adam
            step = source_step
        print(f"resumed at step {step} ({elapsed_before / 60:.1f} min trained before)"
              + (f" from the promoted {shipped}" if promoted else ""), flush=True)
    # references: "group" = another image of the same sol / source frame; "descriptor" = one of the
    # 4 nearest images by the rover's own latent descriptor, recomputed once per run (the model's
    # current encoder), as the rover's library selection would choose
    descriptors = None
    if cfg.get("ref_selection", "group") == "descriptor":
        with torch.autocast(device.type, enabled=False):
            descriptors = rover_descriptors(model.encoder, images, device=device)
    # "folder_weights" ({folder: weight}): draw some folders' images more often (not from a pack)
    draw_weights = None if args.pack or not cfg.get("folder_weights") else \
        folder_weights(args.data, cfg["train_folders"], cfg["folder_weights"], cfg.get("colour_renders"),
                       cfg["channels"])
    sampler = PairSampler(images, groups, cfg["crop"], seed=cfg["seed"], augment=cfg.get("augment", cfg["channels"] == 1),
                          ref_crop=cfg.get("ref_crop"), descriptors=descriptors, weights=draw_weights,
                          downsampled=cfg.get("downsampled", 0.0))

    precision, timings = pick_precision(args, cfg, model, sampler, device)
    if args.bench:
        for p_, t in timings.items():
            print(f"{p_} {t:.2f} s/step")
        print(f"auto -> {precision}")
        return
    log = open(os.path.join(args.log_dir, f"{run_name}.csv"), "a", newline="")
    writer = csv.writer(log)
    cpu = cpu_info()["model"]
    writer.writerow(["info", step, round(elapsed_before, 1), "precision", precision,
                     " ".join(f"{k}={v:.3f}s/step" for k, v in timings.items()), cpu, f"threads={args.threads}"])
    print(f"precision {precision} ({', '.join(f'{k} {v:.2f} s/step' for k, v in timings.items())}) on {cpu}",
          flush=True)
    start = time.time()
    budget = args.minutes * 60

    def save():
        """Joint: the whole model. Decoder stage: only what it trains (decoder, inverse gains);
        the rest is the joint checkpoint, unchanged."""
        tmp = weights + ".tmp"
        state = {k: v for k, v in model.state_dict().items()
                 if args.stage == "joint" or k.startswith("decoder.") or k == "log_inv_gain"}
        # decoder tensors in fp16 (as the ground ships them): keeps the checkpoint under 20 MB; the
        # bitstream side (encoder, h_s, priors, gains) stays fp32, so the model ID is unaffected
        state = {k: (v.half() if k.startswith("decoder.") and v.is_floating_point() else v) for k, v in state.items()}
        save_file({k: v.contiguous() for k, v in state.items()}, tmp,
                  metadata={"step": str(step), "config": json.dumps(cfg), "stage": args.stage,
                            "decoder_extra": ",".join(map(str, model.decoder.extra)),
                            "decoder_wide": ",".join(map(str, model.decoder.wide)),
                            "lambdas": json.dumps(model.lambdas), "latent_digest": latent_digest(model.state_dict())})
        os.replace(tmp, weights)
        torch.save({"opt": opt.state_dict(), "names": order, "step": step,
                    "elapsed": elapsed_before + time.time() - start}, opt_path)

    acc, last_save = [], time.time()
    first_step = step
    while time.time() - start < budget and (args.steps is None or step - first_step < args.steps):
        frac = (time.time() - start) / budget     # each chunk: lr, then its last final_fraction at lr_final
        lr = cfg["lr"] if frac < 1 - cfg["final_fraction"] else cfg["lr_final"]
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        x, ref = sampler.batch(*batch_shape(cfg, step))
        x = x.to(device).to(memory_format=torch.channels_last)
        ref = ref.to(device).to(memory_format=torch.channels_last)
        q = torch.rand(x.shape[0], device=device) * 100
        ref_on = torch.rand(x.shape[0], device=device) > cfg["ref_dropout"]
        dec_on = ref_on & (not args.no_decoder_refs)
        ref_on = ref_on & (not args.no_entropy_refs)
        loss, mse, bpp = rd_loss(model, x, ref, q, ref_on, dec_on, precision=precision)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
        opt.step()
        step += 1
        acc.append((loss.item(), bpp.mean().item(), (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item()))
        if step % 50 == 0:
            l, b, p = (sum(v) / len(v) for v in zip(*acc))
            writer.writerow(["train", step, round(elapsed_before + time.time() - start, 1), lr, l, b, p])
            log.flush()
            acc = []
        if step % cfg["checkpoint_every"] == 0 or time.time() - last_save > 60 * CHECKPOINT_MINUTES:
            save()
            last_save = time.time()
        if step % cfg["eval_every"] == 0:
            for q, b, p in evaluate(model, val, device):
                writer.writerow(["val", step, round(elapsed_before + time.time() - start, 1), q, "", b, p])
                print(f"step {step} q{q}: {b:.3f} bpp {p:.2f} dB", flush=True)
            for q, b, p in (evaluate(model, frames, device, FRAME_QUALITIES) if frames is not None else ()):
                writer.writerow(["frame", step, round(elapsed_before + time.time() - start, 1), q, "", b, p])
                print(f"step {step} whole-frame q{q}: {b:.3f} bpp {p:.2f} dB", flush=True)
            log.flush()
    save()
    print(f"stopped at step {step}", flush=True)


if __name__ == "__main__":
    main()
