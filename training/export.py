"""Export a trained REMAC checkpoint to the artifacts the codec runs on.

    models/weights/<name>.safetensors
        -> rover_encoder/assets/<name>/encoder.onnx      float g_a + h_a (dynamic H, W)
        -> bitstream/assets/<name>/entropy.npz            integer h_s, CDF tables, gain table
        -> bitstream/assets/<name>/model.json             identity (model ID) and layer kinds

A decoder-stage overlay (models/weights/<name>_heavy.safetensors) is not exported: it becomes part
of the shipped checkpoint through training.promote (with_overlay).
`python -m training.export grey colour`
"""
import argparse
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load, save_file

from remac.bitstream import spatial as bitstream_spatial
from remac.bitstream import spec
from remac.bitstream.entropy import quantize_pmf
from remac.bitstream.modelfile import canonical_digest, ASSETS as BITSTREAM_ASSETS
from remac.models.ground import ground_weights_path
from remac.models.codec import CHANNELS, REMAC, checkpoint_path, latent_digest, model_from_state
from training import ROOT
from remac.models.checkpoint import strip_decoder, with_decoder

ROVER_ASSETS = ROOT / "rover_encoder" / "assets"
def with_overlay(base: dict, overlay: dict, overlay_meta: dict, where: str = "the overlay") -> dict:
    """A decoder-stage checkpoint (`training.train --stage decoder`: decoder + inverse gains
    only, models/weights/<name>_heavy.safetensors) laid over the joint checkpoint it was trained on:
    base's bitstream side, overlay's decoder. Refuses an overlay that holds more than a decoder or
    was trained on other latents (models.codec.latent_digest; calibrated scale floors may differ)."""
    if any(not (k.startswith("decoder.") or k == "log_inv_gain") for k in overlay):
        raise SystemExit(f"{where} holds more than a decoder: refusing to change the bitstream side")
    if overlay_meta.get("latent_digest") != latent_digest(base):
        raise SystemExit(f"{where} was trained on other latents than the shipped model: retrain it or delete it")
    return {k: v for k, v in base.items() if not k.startswith("decoder.")} | overlay


def is_overlay(state) -> bool:
    """Whether a checkpoint's tensors (a dict, or its set of names) are a decoder-stage overlay (no
    bitstream side) rather than a joint checkpoint."""
    return "log_gain" not in state


def y_tables(fitted=None):
    """One table per scale index: discretized N(0, sigma) over [-R, R] plus escape; with `fitted`
    ((T, L) counts from training.calibrate.fit_tables, same support) those counts instead."""
    if fitted is not None:
        counts, offsets, sizes = y_tables()
        return _checked(fitted, counts, "y"), offsets, sizes
    rows, offsets, sizes = [], [], []
    for sigma in spec.scale_table():
        r = int(min(math.ceil(sigma * 8) + 1, 1024))
        k = np.arange(-r, r + 1, dtype=np.float64)
        cdf = lambda v: 0.5 * np.array([math.erfc(-t / (sigma * math.sqrt(2))) for t in v])
        pmf = cdf(k + 0.5) - cdf(k - 0.5)
        rows.append(quantize_pmf(pmf, 1.0 - pmf.sum()))
        offsets.append(-r)
        sizes.append(2 * r + 1)
    return _pack(rows, offsets, sizes)


@torch.no_grad()
def z_tables(model: REMAC, fitted=None):
    """One table per z channel from the learned logistic-mixture prior, tails trimmed at 1e-7; with
    `fitted` ((Z, L) counts from training.calibrate, same support) those counts instead."""
    if fitted is not None:
        counts, offsets, sizes = z_tables(model)
        return _checked(fitted, counts, "z"), offsets, sizes
    k = torch.arange(-spec.Z_CLIP, spec.Z_CLIP + 1, dtype=torch.float64)
    prior = model.z_prior.double()
    grid = k.view(1, 1, 1, -1).expand(1, model.nz, 1, -1)
    upper, lower = prior.cdf(grid + 0.5)[0, :, 0], prior.cdf(grid - 0.5)[0, :, 0]
    model.z_prior.float()
    rows, offsets, sizes = [], [], []
    for c in range(model.nz):
        keep = ((upper[c] > 1e-7) & (lower[c] < 1 - 1e-7)).nonzero().flatten()
        lo, hi = int(keep.min()), int(keep.max())
        pmf = (upper[c] - lower[c])[lo:hi + 1].numpy()
        rows.append(quantize_pmf(pmf, 1.0 - pmf.sum()))
        offsets.append(int(k[lo]))
        sizes.append(hi - lo + 1)
    return _pack(rows, offsets, sizes)


def _checked(fitted, counts, what):
    """fitted counts must have the base tables' layout: same support (zero exactly where the base
    is zero), no zero count inside it, rows summing to 2**PROB_BITS."""
    fitted = np.asarray(fitted, dtype=np.int32)
    if (fitted.shape != counts.shape or (fitted.sum(1) != 2 ** spec.PROB_BITS).any()
            or not np.array_equal(fitted > 0, counts > 0)):
        raise SystemExit(f"fitted {what} tables do not match the format's table layout")
    return fitted


def _pack(rows, offsets, sizes):
    counts = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.int32)
    for i, r in enumerate(rows):
        counts[i, :len(r)] = r
    return counts, np.array(offsets, dtype=np.int32), np.array(sizes, dtype=np.int32)


@torch.no_grad()
def gain_table(model: REMAC) -> np.ndarray:
    q = torch.arange(spec.QUALITY_LEVELS, dtype=torch.float32)
    gain, _ = model.gains_for_quality(q)
    return model.gain_int(gain).to(torch.int64).numpy()


def export_onnx(model: REMAC, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, model.channels, 128, 192)
    gain = torch.ones(1, model.m, 1, 1)
    h, w = torch.export.Dim("h64", min=1, max=1024) * 64, torch.export.Dim("w64", min=1, max=1024) * 64
    onnx = torch.onnx.export(model.encoder.float(), (x, gain), dynamo=True, external_data=False,
                             input_names=["x", "gain"], output_names=["y", "z", "shallow"],
                             dynamic_shapes={"x": {2: h, 3: w}, "gain": None})
    onnx.save(str(path))


@torch.no_grad()
def export_decoder(model: REMAC, name: str, model_id: str, path: Path = None):
    """Ground artifact: ref-decoder weights (fp16) + per-quality inverse gains, tagged with the model ID."""
    q = torch.arange(spec.QUALITY_LEVELS, dtype=torch.float32)
    _, inv_gain = model.gains_for_quality(q)
    tensors = {f"decoder.{k}": v.half().contiguous() for k, v in model.decoder.state_dict().items()}
    tensors["inv_gain"] = inv_gain.float().contiguous()
    version = hashlib.sha256(b"".join(t.numpy().tobytes() for _, t in sorted(tensors.items()))).hexdigest()[:16]
    save_file(tensors, str(path or ground_weights_path(name)),
              metadata={"model_id": model_id, "decoder_version": version, "name": name,
                        "channels": str(model.channels), "m": str(model.m),
                        "decoder_extra": ",".join(map(str, model.decoder.extra)),
                        "decoder_wide": ",".join(map(str, model.decoder.wide))})


def export(name: str, weights: Path = None, out: Path = None) -> str:
    """Export a checkpoint (default: the shipped one) to the shipped places, or with `out` to one
    model directory (model.json, entropy.npz, encoder.onnx, decoder.safetensors: the layout of a
    model store, bitstream.store). -> the model ID (hex)."""
    path = Path(weights or checkpoint_path(name))
    blob = path.read_bytes()     # one read: hash and weights agree
    state = with_decoder(load(blob), path)
    model = model_from_state(name, state)
    onnx_path = Path(out) / "encoder.onnx" if out else ROVER_ASSETS / name / "encoder.onnx"
    export_onnx(model, onnx_path)
    arrays = {"gain_int": gain_table(model)}
    layers = {"slices": list(model.hyper.slices)} if model.hyper.slices else {}
    for part, exported in model.hyper.export().items():
        items = exported if isinstance(exported, list) else [exported]
        layers[part] = [l["kind"] for l in items] if isinstance(exported, list) else exported["kind"]
        for i, layer in enumerate(items):
            for f, v in layer.items():
                if f != "kind":
                    arrays[f"hs/{part}/{i}/{f}"] = v.astype(np.int16 if f == "weight" else np.int64)
    for prefix, (counts, offsets, sizes) in (("y", y_tables(state.get("coder.y_counts"))),
                                             ("z", z_tables(model, state.get("coder.z_counts")))):
        arrays[f"{prefix}/counts"], arrays[f"{prefix}/offsets"], arrays[f"{prefix}/sizes"] = counts, offsets, sizes
    if "coder.idx_floors" in state:     # per-quality-band scale-index floors (training.calibrate)
        arrays["floors/idx"] = state["coder.idx_floors"].numpy().astype(np.int64)
        arrays["floors/edges"] = state["coder.floor_edges"].numpy().astype(np.int64)
        if "coder.chroma_floors" in state:      # chroma planes' own floors ("split" calibration)
            arrays["floors/chroma"] = state["coder.chroma_floors"].numpy().astype(np.int64)
    if model.hyper.has_spatial:         # channel 0 in passes (bitstream.spatial): the calibrated shifts, else none
        if "coder.idx_floors" not in state:
            raise SystemExit(f"{name}: a model with spatial context needs its quality bands: calibrate it first")
        bands = len(state["coder.floor_edges"]) + 1
        shifts = state.get("coder.spatial_delta", torch.zeros(bands, 2, bitstream_spatial.CLASSES))
        arrays["spatial/delta"] = shifts.numpy().astype(np.int64)
    enc = hashlib.sha256()
    for k, v in sorted(model.encoder.state_dict().items()):
        enc.update(k.encode() + v.detach().float().contiguous().numpy().tobytes())
    meta = {"name": name, "channels": model.channels, "m": model.m, "nz": model.nz, "layers": layers,
            "encoder_weights_sha256": enc.hexdigest(),
            "encoder_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest()}
    meta["model_id"] = canonical_digest(arrays, meta).hex()
    meta["checkpoint_sha256"] = hashlib.sha256(blob).hexdigest()
    folder = Path(out) if out else BITSTREAM_ASSETS / name
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "entropy.npz", **arrays)
    (folder / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    export_decoder(model, name, meta["model_id"], Path(out) / "decoder.safetensors" if out else None)
    if weights is None and out is None:
        strip_decoder(path)         # the ground artifact now holds the decoder: one copy in the tree
    print(f"{name}: model {meta['model_id']}, onnx {onnx_path.stat().st_size / 1e6:.2f} MB, "
          f"entropy {os.path.getsize(folder / 'entropy.npz') / 1e3:.0f} kB")
    return meta["model_id"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=sorted(CHANNELS))
    args = ap.parse_args(argv)
    for name in args.names:
        export(name)


if __name__ == "__main__":
    main()
