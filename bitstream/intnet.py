"""Exact integer execution of the hyper-synthesis network, in numpy, on rover and ground alike.

Layers are dicts exported by models.intnet:
    {"kind": "conv", "weight": (Cout,Cin,k,k) int, "bias": (Cout,) int, "mult": (Cout,) int,
     "lo": (Cout,) int, "hi": (Cout,) int}
    {"kind": "d2s"}                                   # (C*4,H,W) -> (C,2H,2W), torch order

Each conv computes acc = sum(x * W) + B exactly and requantizes
    out = clip((acc * mult + 2**(S-1)) >> S, lo, hi),  S = spec.REQUANT_SHIFT.
The sums run as BLAS GEMMs over integer-valued floats, exact because every product and partial
sum is an integer the float type holds exactly, in any summation order. `prepare` proves it from
the weights and input bounds when a model is loaded and gives every conv its GEMM plan
(layer["gemm"]): the weight matrix, im2col order, split into column chunks whose partial sums stay
below 2**24 (float32: |x|·|W| summed over a chunk, per output row); the chunks' results are added
in float64 (exact below 2**53). A column that alone could reach 2**24 puts the layer in float64.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from remac.bitstream import spec
from remac.bitstream.errors import ModelError

_EXACT = 2 ** 52
_F32_EXACT = 2 ** 24
_INT64_SAFE = 2 ** 62


def _im2col(x, k, dtype):
    """(Cin,H,W) int -> (Cin*k*k, H*W) `dtype` with zero 'same' padding, matching torch's weight layout."""
    c, h, w = x.shape
    if k == 1:
        return x.reshape(c, h * w).astype(dtype)
    p = k // 2
    xp = np.zeros((c, h + 2 * p, w + 2 * p), dtype=dtype)
    xp[:, p:p + h, p:p + w] = x
    return sliding_window_view(xp, (h, w), axis=(1, 2)).reshape(c * k * k, h * w)


def _chunks(w: np.ndarray, bound: int) -> list:
    """w (Cout, K) int, |inputs| <= bound (and bound * sum |w| per row < 2**52, as prepare checks
    first) -> [(k0, k1)] consecutive column ranges covering 0..K, each with max over rows of
    bound * sum |w[:, k0:k1]| < 2**24 (float32-exact); None when a single column breaks that."""
    if (np.abs(w).sum(axis=1) * bound).max() < _F32_EXACT:
        return [(0, w.shape[1])]
    cum = np.concatenate([np.zeros((w.shape[0], 1), np.int64), np.cumsum(np.abs(w) * bound, axis=1)], axis=1)
    chunks, k0 = [], 0
    while k0 < w.shape[1]:
        fits = (cum[:, k0 + 1:] - cum[:, k0:k0 + 1]).max(axis=0) < _F32_EXACT
        if not fits[0]:
            return None
        k1 = k0 + int(np.argmin(fits)) if not fits.all() else w.shape[1]
        chunks.append((k0, k1))
        k0 = k1
    return chunks


def gemm_plan(layer: dict, bound: int) -> tuple:
    """-> (dtype, [(k0, k1, weight columns k0:k1 (Cout, k1-k0) of that dtype)]) for a conv whose
    inputs satisfy |x| <= bound: float32 chunks (see _chunks), else one float64 matrix."""
    w = layer["weight"].reshape(layer["weight"].shape[0], -1)
    chunks = _chunks(w, bound)
    dtype = np.float64 if chunks is None else np.float32
    return dtype, [(k0, k1, np.ascontiguousarray(w[:, k0:k1], dtype=dtype))
                   for k0, k1 in (chunks or [(0, w.shape[1])])]


def conv(x: np.ndarray, layer: dict) -> np.ndarray:
    """x: (Cin,H,W) int64 -> (Cout,H,W) int64, for a layer `prepare` gave its GEMM plan."""
    cout, cin, k, _ = layer["weight"].shape
    if x.shape[0] != cin:
        raise ModelError(f"integer conv expects {cin} input channels, got {x.shape[0]}")
    if "gemm" not in layer:
        raise ModelError("integer network used before bitstream.intnet.prepare proved it exact")
    dtype, chunks = layer["gemm"]
    cols = _im2col(x, k, dtype)
    total = None
    for k0, k1, w in chunks:
        part = w @ cols[k0:k1]
        total = part if total is None else np.add(total, part, dtype=np.float64)
    acc = total.astype(np.int64)
    acc *= layer["mult"][:, None]
    acc += layer["offset"][:, None]
    acc >>= spec.REQUANT_SHIFT
    np.maximum(acc, layer["lo"][:, None], out=acc)      # = np.clip(acc, lo, hi), in two plain passes
    np.minimum(acc, layer["hi"][:, None], out=acc)      # (np.clip's broadcasting path is ~1.5x slower)
    return acc.reshape(cout, x.shape[1], x.shape[2])


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
    return hyper_features(net, trunk(net, z_hat), r)[1:]


def trunk(net: dict, z_hat: np.ndarray) -> np.ndarray:
    """z_hat (Z,h,w) int -> hidden (C, 4h, 4w) int64: the part of the hyper-synthesis that does not
    read the reference, so a tile coded with and without one runs it once."""
    return run(net["trunk"], z_hat.astype(np.int64))


def hyper_features(net: dict, hidden: np.ndarray, r: np.ndarray):
    """hidden (C, 4h, 4w) = trunk(net, z_hat), r (2M+1,) int -> (F (192, 4h, 4w) fused hidden
    features, mu16, idx (M, 4h, 4w)): hyper_synthesis plus the features the channel-context
    slices read."""
    g = run(net["ref"], r.astype(np.int64).reshape(-1, 1, 1))
    g = np.broadcast_to(g, (g.shape[0],) + hidden.shape[1:])
    features = conv(np.concatenate([hidden, g], axis=0), net["fuse"])
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


def prepare(net: dict) -> None:
    """Prove every accumulator exact and give each conv layer its GEMM plan ("gemm", gemm_plan) and
    requantization offset ("offset" = bias * mult + 2**(S-1), so out = (sum * mult + offset) >> S
    with sum = acc - bias: both terms below 2**62, their sum within int64); ModelError (nothing
    attached) unless every sum stays below 2**52 and acc * mult below 2**62."""
    plans = []

    def walk(layers, bound):
        for layer in layers:
            if layer["kind"] != "conv":
                continue
            w = np.abs(layer["weight"]).reshape(layer["weight"].shape[0], -1).sum(1)
            acc = bound * w + np.abs(layer["bias"])
            if acc.max() >= _EXACT or (acc * np.abs(layer["mult"])).max() >= _INT64_SAFE:
                raise ModelError("integer network could overflow its exact range; model rejected")
            plans.append((layer, gemm_plan(layer, bound)))
            bound = int(max(np.abs(layer["lo"]).max(), np.abs(layer["hi"]).max()))
        return bound
    hidden = walk(net["trunk"], spec.Z_CLIP)
    ref = walk(net["ref"], spec.REF_CLIP)
    features = walk([net["fuse"]], max(hidden, ref))
    walk([net["out"]], features)
    for k in range(1, len(net.get("slices", ())) - 1):
        walk(net[f"ctx{k}"], max(features, spec.ACT_MAX))
    for layer, plan in plans:
        layer["gemm"] = plan
        layer["offset"] = layer["bias"] * layer["mult"] + (1 << (spec.REQUANT_SHIFT - 1))
