"""Checkpoint surgery for training: grow a trained model's tensors (more quality levels, the spatial
context, a lapped transform, a wider correction branch) so that it codes as before and trains on."""
import math

import torch

from remac.models.rover_nets import lapped_kernel


def with_lap(state: dict, lap: int, decoder_lap: int = 0) -> dict:
    """A klt checkpoint's tensors with the encoder's block transform widened to `lap` and the
    decoder's linear synthesis to `decoder_lap` (lapped_kernel): the same y from the same x and the
    same x_hat from the same y (the paddings keep every block where it was)."""
    out = {**state, "encoder.proj.weight": lapped_kernel(state["encoder.proj.weight"], lap)}
    if "decoder.synth_lin.weight" in state:
        out["decoder.synth_lin.weight"] = lapped_kernel(state["decoder.synth_lin.weight"], decoder_lap)
    return out


def extend_levels(state: dict, levels: int) -> dict:
    """A checkpoint with L quality levels -> one with `levels` >= L: the new rows of `log_gain` and
    `log_inv_gain` (L, M) continue the last two rows' log-linear trend, so the old top quality's
    gains are unchanged and each new level steps on as the last one did (Cui et al.'s gain units
    extrapolate well: one level past an 8-level model's top decoded val/gray at 1.55 bpp / 45.5 dB,
    PSNR still rising). The state is returned unchanged when it has `levels` rows already."""
    out = dict(state)
    for key in ("log_gain", "log_inv_gain"):
        rows = state[key]
        if rows.shape[0] > levels:
            raise ValueError(f"{key} has {rows.shape[0]} levels, more than {levels}")
        step = rows[-1] - rows[-2]
        extra = [rows[-1] + k * step for k in range(1, levels - rows.shape[0] + 1)]
        out[key] = torch.cat([rows, *(e[None] for e in extra)]) if extra else rows
    return out


def with_spatial(state: dict) -> dict:
    """A checkpoint's tensors with the spatial-context flag (HyperSynthesis(spatial=True)): channel
    0 coded in passes from then on; nothing else changes (the calibration chooses the shifts)."""
    return {**state, "hyper.spatial": torch.ones(1)}


def with_width(state: dict, width: int, seed: int = 0) -> dict:
    """A klt checkpoint's tensors with the encoder's correction branch (KLTEncoder.rest) widened to
    `width` channels at 1/4 and 1/8, y unchanged: the new channels of rest.0 and rest.2 start as a
    fresh layer would (PyTorch's default init, seeded), and every weight that reads a new channel
    (rest.2, rest.4) starts at zero, so gradients reach them and nothing moves before they do. Each
    GDN's new channels are normalised among themselves (gamma 0.1 I); the old channels' terms for
    a new one start at 1e-6 (not 0: |gamma| has no gradient at 0), a relative change of ~1e-6.
    A state as wide or wider is returned as it is."""
    old = int(state["encoder.rest.0.weight"].shape[0])
    if width <= old:
        return state
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)

    def grow(w, rows, cols):
        """(o, i, ...) -> (rows, cols, ...): old in the corner, zeros elsewhere."""
        big = w.new_zeros((rows, cols, *w.shape[2:]))
        big[:w.shape[0], :w.shape[1]] = w
        return big

    for conv in ("encoder.rest.0", "encoder.rest.2"):
        w, b = state[f"{conv}.weight"], state[f"{conv}.bias"]
        cin = w.shape[1] if conv.endswith(".0") else width
        bound = 1 / math.sqrt(cin * w.shape[2] * w.shape[3])   # nn.Conv2d's default (kaiming_uniform a=sqrt5)
        big = grow(w, width, cin)
        big[old:] = (torch.rand(big[old:].shape, generator=gen) * 2 - 1) * bound
        out[f"{conv}.weight"] = big
        out[f"{conv}.bias"] = torch.cat([b, b.new_zeros(width - old)])
    for gdn in ("encoder.rest.1", "encoder.rest.3"):
        gamma = grow(state[f"{gdn}.gamma"], width, width)
        gamma[:old, old:] = 1e-6
        gamma[old:, old:] = 0.1 * torch.eye(width - old).view(width - old, width - old, 1, 1)
        out[f"{gdn}.gamma"] = gamma
        out[f"{gdn}.beta"] = torch.cat([state[f"{gdn}.beta"], state[f"{gdn}.beta"].new_ones(width - old)])
    w4 = state["encoder.rest.4.weight"]
    out["encoder.rest.4.weight"] = grow(w4, w4.shape[0], width)
    return out
