"""Exact integer execution of the hyper-synthesis network, in numpy, on rover and ground alike.

Layers are dicts exported by models.intnet:
    {"kind": "conv", "weight": (Cout,Cin,k,k) int, "bias": (Cout,) int, "mult": (Cout,) int,
     "lo": (Cout,) int, "hi": (Cout,) int}
    {"kind": "d2s"}                                   # (C*4,H,W) -> (C,2H,2W), torch order

Each conv computes acc = sum(x * W) + B exactly and requantizes
    out = clip((acc * mult + 2**(S-1)) >> S, lo, hi),  S = spec.REQUANT_SHIFT.
The sums run as float64 GEMMs: exact because every operand and partial sum is an integer below
2**53, which `check_exact` proves from the weights and input bounds when a model is loaded.
"""
import numpy as np

from remac.bitstream import spec
from remac.bitstream.errors import ModelError

_EXACT = 2 ** 52
_INT64_SAFE = 2 ** 62


def _im2col(x, k):
    """(Cin,H,W) -> (Cin*k*k, H*W) with zero 'same' padding, matching torch's weight layout."""
    if k == 1:
        return x.reshape(x.shape[0], -1)
    c, h, w = x.shape
    p = k // 2
    xp = np.zeros((c, h + 2 * p, w + 2 * p), dtype=x.dtype)
    xp[:, p:p + h, p:p + w] = x
    cols = np.empty((c, k, k, h, w), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xp[:, i:i + h, j:j + w]
    return cols.reshape(c * k * k, h * w)


def conv(x: np.ndarray, layer: dict) -> np.ndarray:
    """x: (Cin,H,W) int64 -> (Cout,H,W) int64."""
    w = layer["weight"]
    cout, cin, k, _ = w.shape
    if x.shape[0] != cin:
        raise ModelError(f"integer conv expects {cin} input channels, got {x.shape[0]}")
    cols = _im2col(x.astype(np.float64), k)
    acc = (w.reshape(cout, -1).astype(np.float64) @ cols).astype(np.int64)
    acc += layer["bias"][:, None]
    out = (acc * layer["mult"][:, None] + (1 << (spec.REQUANT_SHIFT - 1))) >> spec.REQUANT_SHIFT
    out = np.clip(out, layer["lo"][:, None], layer["hi"][:, None])
    return out.reshape(cout, x.shape[1], x.shape[2])


def depth_to_space(x: np.ndarray) -> np.ndarray:
    """(C*4,H,W) -> (C,2H,2W): out[c, 2h+i, 2w+j] = x[4c + 2i + j, h, w] (torch pixel_shuffle)."""
    c4, h, w = x.shape
    return x.reshape(c4 // 4, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(c4 // 4, 2 * h, 2 * w)


def run(layers, x):
    for layer in layers:
        x = conv(x, layer) if layer["kind"] == "conv" else depth_to_space(x)
    return x


def hyper_synthesis(net: dict, z_hat: np.ndarray, r: np.ndarray):
    """z_hat: (Z,h,w) int; r: (2M+1,) int (gained ref stats + flag; zeros = no reference).

    Returns (mu16, idx), each (M, 4h, 4w) int64: every channel's, from the hyperprior alone.
    """
    return hyper_features(net, z_hat, r)[1:]


def hyper_features(net: dict, z_hat: np.ndarray, r: np.ndarray):
    """-> (F (192, 4h, 4w) fused hidden features, mu16, idx (M, 4h, 4w)): hyper_synthesis plus the
    features the channel-context slices read."""
    h = run(net["trunk"], z_hat.astype(np.int64))
    g = run(net["ref"], r.astype(np.int64).reshape(-1, 1, 1))
    g = np.broadcast_to(g, (g.shape[0],) + h.shape[1:])
    features = conv(np.concatenate([h, g], axis=0), net["fuse"])
    out = conv(features, net["out"])
    m = out.shape[0] // 2
    return features, out[:m], out[m:]


def context_input(decoded16: np.ndarray) -> np.ndarray:
    """16 * y_hat_g of the decoded channels (ints) -> the context nets' input min(|v| >> CTX_SHIFT, 255)."""
    return np.minimum(np.abs(decoded16) >> spec.CTX_SHIFT, spec.ACT_MAX)


def slice_params(net: dict, k: int, features: np.ndarray, decoded16: np.ndarray, mu16: np.ndarray,
                 idx: np.ndarray):
    """Slice k >= 1 of a model with channel context: (mu16, idx) of channels slices[k]..slices[k+1]
    = the hyperprior's (mu16, idx of those channels) + corrections from ctx<k>(features, decoded
    channels 0..slices[k]), clipped to the hyperprior's per-channel output range."""
    lo, hi = net["out"]["lo"], net["out"]["hi"]
    s0, s1 = net["slices"][k], net["slices"][k + 1]
    m, mk = lo.shape[0] // 2, s1 - s0
    d = run(net[f"ctx{k}"], np.concatenate([features, context_input(decoded16)], axis=0))
    mu = np.clip(mu16 + d[:mk], lo[s0:s1, None, None], hi[s0:s1, None, None])
    ix = np.clip(idx + d[mk:], lo[m + s0:m + s1, None, None], hi[m + s0:m + s1, None, None])
    return mu, ix


def check_exact(net: dict) -> None:
    """Raise ModelError unless every accumulator provably stays exact in float64 and int64."""
    def walk(layers, bound):
        for layer in layers:
            if layer["kind"] != "conv":
                continue
            w = np.abs(layer["weight"]).reshape(layer["weight"].shape[0], -1).sum(1)
            acc = bound * w + np.abs(layer["bias"])
            if acc.max() >= _EXACT or (acc * np.abs(layer["mult"])).max() >= _INT64_SAFE:
                raise ModelError("integer network could overflow its exact range; model rejected")
            bound = int(max(np.abs(layer["lo"]).max(), np.abs(layer["hi"]).max()))
        return bound
    hidden = walk(net["trunk"], spec.Z_CLIP)
    ref = walk(net["ref"], spec.REF_CLIP)
    walk([net["fuse"], net["out"]], max(hidden, ref))
    for k in range(1, len(net.get("slices", ())) - 1):
        walk(net[f"ctx{k}"], spec.ACT_MAX)
