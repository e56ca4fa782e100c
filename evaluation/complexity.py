"""Rover cost, measured the way learned-compression papers do: kMAC/px and parameters from
torch.utils.flop_counter on the PyTorch twin of the exported graph, plus the integer h_s (which the
rover also runs) counted from its layer shapes."""
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from remac.bitstream import modelfile


def torch_kmac_per_px(module: torch.nn.Module, inputs: tuple, pixels: int) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() / 2 / pixels / 1e3


def intnet_kmac_per_px(name: str) -> float:
    """MACs of the integer h_s (and channel-context slices) per image pixel (y is 1/16 of the image
    in each dimension)."""
    net = modelfile.load(name).net
    macs, scale = 0.0, 1.0 / 64 ** 2        # trunk starts at z resolution
    for layer in net["trunk"]:
        if layer["kind"] == "d2s":
            scale *= 4
            continue
        cout, cin, k, _ = layer["weight"].shape
        macs += cout * cin * k * k * scale
    ctx = [layer for k in range(1, len(net.get("slices", ())) - 1) for layer in net[f"ctx{k}"]]
    for layer in [net["fuse"], net["out"], *ctx]:      # channel-context slices run at y resolution too
        cout, cin, k, _ = layer["weight"].shape
        macs += cout * cin * k * k * scale
    return macs / 1e3


def tile_context_overhead(width: int, height: int) -> float:
    """Analysed pixels / image pixels for a frame cut into default tiles, each analysed with its
    TILE_CONTEXT border of neighbouring pixels (and padded to multiples of 64)."""
    from remac.bitstream.container import Header
    from remac.rover_encoder.options import DEFAULT_TILE, TILE_CONTEXT
    from remac.rover_encoder.prepared import context_window
    header = Header(bytes(8), width, height, 1, 1, 8, 50, DEFAULT_TILE, DEFAULT_TILE)
    area = 0
    for index in range(header.tile_count):
        (top, bottom, left, right), _ = context_window(header, index, TILE_CONTEXT)
        area += -(-(bottom - top) // 64) * 64 * -(-(right - left) // 64) * 64
    return area / (width * height)


def rover_complexity(name: str) -> dict:
    from remac.models.baselines import Minnen2018Encoder
    from remac.models import ground
    from remac.models.codec import load_model
    model = load_model(name)
    shipped_decoder = ground.load(name).decoder      # the ground's decoder (stage 2 if shipped)
    c, size = model.channels, 256
    x = torch.rand(1, c, size, size)
    gain = torch.ones(1, model.m, 1, 1)
    enc = torch_kmac_per_px(model.encoder, (x, gain), size * size)
    hs = intnet_kmac_per_px(name)
    passes = 2      # with a reference chosen, the tiles are entropy-coded with it and without (Prepared)
    minnen = Minnen2018Encoder(c)
    return {
        "model": name,
        "encoder_kmac_px": round(enc, 2),
        "int_hs_kmac_px": round(hs, 3),
        "int_hs_passes": passes,
        "rover_total_kmac_px": round(enc + passes * hs, 2),
        "rover_total_kmac_px_2048_tiled": round(enc * tile_context_overhead(2048, 2048) + passes * hs, 2),
        "encoder_params": sum(p.numel() for p in model.encoder.parameters()),
        "decoder_kmac_px": round(torch_kmac_per_px(shipped_decoder, (torch.rand(1, model.m, 16, 16), x), size * size), 1),
        "decoder_params": sum(p.numel() for p in shipped_decoder.parameters()),
        "minnen2018_encoder_kmac_px": round(torch_kmac_per_px(minnen, (x,), size * size), 2),
        "minnen2018_encoder_params": sum(p.numel() for p in minnen.parameters()),
    }


if __name__ == "__main__":
    import json
    print(json.dumps(rover_complexity("grey")))    # colour: the same model on Y + 2 quarter-size planes (x1.5)
