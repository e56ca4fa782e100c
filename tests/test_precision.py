"""models.precision: the float arithmetic is picked by measurement (training) or CPU flags (decoding)."""
import time

import pytest

torch = pytest.importorskip("torch")

from remac.models import precision  # noqa: E402
from remac.rover_encoder.options import EncodeOptions


def test_fastest_candidate_wins():
    cost = {"fp32": 0.002, "bf16": 0.02}        # as on an AVX2-only CPU: bf16 emulated, slower
    best, timings = precision.choose_by_timing(lambda p: time.sleep(cost[p]), warmup=0, repeats=2)
    assert best == "fp32" and timings["bf16"] > timings["fp32"] >= 0.002
    cost = {"fp32": 0.02, "bf16": 0.002}        # as on a Xeon with AMX
    assert precision.choose_by_timing(lambda p: time.sleep(cost[p]), warmup=0, repeats=2)[0] == "bf16"


def test_autocast_contexts():
    x = torch.ones(2, 2)
    with precision.autocast("fp32"):
        assert (x @ x).dtype == torch.float32
    with precision.autocast("bf16"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.autocast("fp16")


def test_decoding_precision_follows_the_cpu_flags_only():
    assert precision.decode_precision({"avx2", "avx512_bf16"}) == "fp32"
    assert precision.decode_precision({"avx512_bf16", "amx_bf16", "amx_tile"}) == "bf16"
    assert precision.decode_precision() == precision.decode_precision()      # this machine: stable
    info = precision.cpu_info()
    assert info["model"] and isinstance(info["flags"], set)


def test_the_ground_decoder_follows_decode_precision(monkeypatch):
    """A machine with AMX would decode in bf16: still the same pixels for any thread count, close
    to fp32 (the klt linear path stays fp32)."""
    import numpy as np
    from remac.models import ground
    from remac.ground_decoder.decode import decode
    from remac.rover_encoder.encode import encode
    from remac.rover_encoder.imageio import load_image
    from tests.conftest import GREY
    data = encode(load_image(GREY), EncodeOptions(5000)).data
    fp32 = decode(data).image
    gm = ground.load("grey")
    monkeypatch.setattr(gm, "precision", "bf16")
    one, two = decode(data, threads=1).image, decode(data, threads=2).image
    assert np.array_equal(one, two)
    assert np.abs(one.astype(int) - fp32.astype(int)).mean() < 1.0
