"""Archived decoders (models.archive): int8 weights per output channel, exact layout, lossless
bookkeeping, and the releases in the model store load from them."""
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from remac.models.archive import SCALE_SUFFIX, archive_file, dequantize, quantize


def test_quantize_keeps_each_weight_within_half_a_step_and_leaves_small_tensors_alone():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 16, 3, 3, generator=g) * torch.linspace(0.01, 2, 32).view(-1, 1, 1, 1)
    bias = torch.randn(32, generator=g)
    q = quantize({"conv.weight": w, "conv.bias": bias, "tiny": torch.ones(4, 4)})
    assert q["conv.weight"].dtype == torch.int8 and q[f"conv.weight{SCALE_SUFFIX}"].shape == (32,)
    assert q["conv.weight"].abs().amax(dim=(1, 2, 3)).eq(127).all()     # each channel spans the range
    assert torch.equal(q["conv.bias"], bias) and torch.equal(q["tiny"], torch.ones(4, 4))
    back = dequantize(q)
    assert set(back) == {"conv.weight", "conv.bias", "tiny"}
    step = q[f"conv.weight{SCALE_SUFFIX}"].view(-1, 1, 1, 1)
    assert ((back["conv.weight"] - w).abs() <= step / 2 + 1e-7).all()


def test_archive_file_rewrites_once_and_keeps_the_metadata(tmp_path):
    path = tmp_path / "decoder.safetensors"
    save_file({"decoder.w": torch.randn(64, 64, dtype=torch.float16)}, str(path), metadata={"model_id": "ab"})
    assert archive_file(path) > 0
    assert archive_file(path) == 0          # already int8: left alone
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"model_id": "ab", "weights": "int8"}
        assert f.get_tensor("decoder.w").dtype == torch.int8


def test_every_archived_release_in_the_store_is_int8():
    paths = sorted(str(p) for p in (Path(__file__).resolve().parent.parent / "models/store").glob("*/decoder.safetensors"))
    assert paths
    for path in paths:
        with safe_open(path, framework="pt") as f:
            assert f.metadata().get("weights") == "int8", path
