"""The integer network's GEMM path (bitstream.intnet: float32 chunks under 2**24, float64 otherwise)
against a plain reference: float64 im2col GEMM, int64 requantization, as the format defines it."""
import numpy as np
import pytest

from remac.bitstream import intnet, modelfile, spec
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import load_image
from tests.conftest import COLOUR, GREY, RGB3
from remac.rover_encoder.options import EncodeOptions
from remac.bitstream.spec import quality_steps


def _reference_conv(x: np.ndarray, layer: dict) -> np.ndarray:
    """x (Cin,H,W) int -> (Cout,H,W) int64: zero 'same' padding, acc = sum(x * W) + B in float64
    (exact below 2**53), out = clip((acc * mult + 2**(S-1)) >> S, lo, hi) in int64."""
    w = layer["weight"]
    cout, cin, k, _ = w.shape
    c, h, wd = x.shape
    p = k // 2
    xp = np.zeros((c, h + 2 * p, wd + 2 * p))
    xp[:, p:p + h, p:p + wd] = x
    cols = np.stack([xp[:, i:i + h, j:j + wd] for i in range(k) for j in range(k)], axis=1)
    acc = (w.reshape(cout, -1).astype(np.float64) @ cols.reshape(c * k * k, h * wd)).astype(np.int64)
    acc += layer["bias"][:, None]
    out = (acc * layer["mult"][:, None] + (1 << (spec.REQUANT_SHIFT - 1))) >> spec.REQUANT_SHIFT
    return np.clip(out, layer["lo"][:, None], layer["hi"][:, None]).reshape(cout, h, wd)


def _conv_layers(net: dict):
    """(name, layer, |input| bound, input sign) of every conv of the shipped network."""
    hidden = lambda layer: int(max(np.abs(layer["lo"]).max(), np.abs(layer["hi"]).max()))
    trunk = [l for l in net["trunk"] if l["kind"] == "conv"]
    yield "trunk0", trunk[0], spec.Z_CLIP, True
    for i, layer in enumerate(trunk[1:], 1):
        yield f"trunk{i}", layer, hidden(trunk[i - 1]), False
    yield "ref0", net["ref"][0], spec.REF_CLIP, True
    yield "ref1", net["ref"][1], hidden(net["ref"][0]), False
    yield "fuse", net["fuse"], spec.ACT_MAX, False
    yield "out", net["out"], hidden(net["fuse"]), False
    for k in range(1, len(net["slices"]) - 1):
        first, second = net[f"ctx{k}"]
        yield f"ctx{k}.0", first, spec.ACT_MAX, False
        yield f"ctx{k}.1", second, hidden(first), False


@pytest.mark.parametrize("layer_name", ["trunk0", "trunk1", "trunk2", "ref0", "ref1", "fuse", "out",
                                        "ctx1.0", "ctx1.1", "ctx2.0", "ctx2.1"])
def test_every_layer_equals_reference_at_its_input_extremes(layer_name):
    """Random, all-maximum and weight-aligned inputs (the largest sums any row can reach)."""
    net = modelfile.load("grey").net
    name, layer, bound, signed = next(item for item in _conv_layers(net) if item[0] == layer_name)
    cout, cin, k, _ = layer["weight"].shape
    rng = np.random.default_rng(7)
    size = (1, 1) if name.startswith("ref") else (9, 7)
    extremes = [rng.integers(-bound if signed else 0, bound + 1, (cin,) + size), np.full((cin,) + size, bound)]
    for row in (0, int(np.argmax(np.abs(layer["weight"]).sum((1, 2, 3))))):
        aligned = np.sign(layer["weight"][row].sum((1, 2))) * bound
        extremes.append(np.broadcast_to((aligned if signed else np.maximum(aligned, 0))[:, None, None],
                                        (cin,) + size).copy())
    for x in extremes:
        assert np.array_equal(intnet.conv(x, layer), _reference_conv(x, layer))


def test_chunks_keep_float32_partial_sums_below_2_24():
    net = modelfile.load("grey").net
    for _, layer, bound, _ in _conv_layers(net):
        dtype, chunks = layer["gemm"]
        assert dtype == np.float32
        w = layer["weight"].reshape(layer["weight"].shape[0], -1)
        assert [c[0] for c in chunks[1:]] == [c[1] for c in chunks[:-1]] and chunks[-1][1] == w.shape[1]
        for k0, k1, matrix in chunks:
            assert (np.abs(w[:, k0:k1]).sum(1) * bound).max() < 2 ** 24
            assert np.array_equal(matrix, w[:, k0:k1])


def test_a_column_past_2_24_runs_in_float64_and_stays_exact():
    rng = np.random.default_rng(3)
    layer = {"kind": "conv", "weight": rng.integers(-2 ** 20, 2 ** 20, (5, 4, 3, 3)), "bias": rng.integers(-9, 9, 5),
             "mult": np.full(5, 3), "lo": np.full(5, -2 ** 40), "hi": np.full(5, 2 ** 40)}
    one_by_one = dict(layer, weight=np.ones((5, 5, 1, 1), np.int64))
    net = {"trunk": [layer], "ref": [], "fuse": one_by_one, "out": dict(one_by_one)}
    intnet.prepare(net)
    assert layer["gemm"][0] == np.float64
    x = rng.integers(-spec.Z_CLIP, spec.Z_CLIP + 1, (4, 6, 5))
    assert np.array_equal(intnet.conv(x, layer), _reference_conv(x, layer))


@pytest.mark.parametrize("path", [GREY, COLOUR, RGB3])
@pytest.mark.parametrize("quality", [5, 55, 100])
def test_every_tile_bit_identical_to_reference(path, quality, default_library, monkeypatch):
    """Whole encodes (64-px tiles: every tile, references tried and not) with the fast conv and with
    the reference: the same stream, the same z_hat, mu16, idx and y_hat in every tile."""
    img = load_image(path)
    fast = encode(img, EncodeOptions(quality_steps(quality), library=default_library, tile=64), keep_tiles=True)
    monkeypatch.setattr(intnet, "conv", _reference_conv)
    reference = encode(img, EncodeOptions(quality_steps(quality), library=default_library, tile=64), keep_tiles=True)
    assert fast.data == reference.data
    for mine, theirs in zip(fast.tiles, reference.tiles, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert np.array_equal(a, b)
