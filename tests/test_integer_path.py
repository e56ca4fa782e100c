"""The bit-exact entropy path: integer network, tables, range coding, rover == ground."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from remac.bitstream import entropy, intnet, modelfile, spec
from remac.bitstream.errors import ModelError
from remac.ground_decoder.decode import entropy_decode
from remac.rover_encoder import analysis
from remac.rover_encoder.encode import encode
from remac.rover_encoder.imageio import from_pil, load_image
from tests.conftest import COLOUR, GREY
from remac.rover_encoder.options import EncodeOptions


def test_depth_to_space_matches_torch_pixel_shuffle():
    torch = pytest.importorskip("torch")
    x = np.arange(8 * 3 * 5).reshape(8, 3, 5)
    ref = torch.nn.functional.pixel_shuffle(torch.from_numpy(x)[None], 2)[0].numpy()
    assert np.array_equal(intnet.depth_to_space(x), ref)


@pytest.mark.parametrize("name", ["grey"])
def test_numpy_integer_network_equals_trained_torch_network(name):
    """The shipped integer arrays reproduce the trained fake-quantized h_s exactly."""
    torch = pytest.importorskip("torch")
    import hashlib, json
    from remac.models.codec import checkpoint_path, load_model
    meta = json.loads((modelfile.ASSETS / name / "model.json").read_text())
    if hashlib.sha256(checkpoint_path(name).read_bytes()).hexdigest() != meta["checkpoint_sha256"]:
        pytest.skip("training checkpoint has moved on since the shipped export")
    model, em = load_model(name), modelfile.load(name)
    rng = np.random.default_rng(1)
    z = rng.integers(-8, 9, (em.nz, 3, 4))
    stats = rng.integers(-200, 200, (2, em.m))
    r = spec.ref_input(stats, em.gain_int[70])
    mu16, idx = intnet.hyper_synthesis(em.net, z, r)
    hyper = model.hyper.double()    # float64: integer sums exact (float32 drifts past 2^24, as in training)
    with torch.no_grad():
        mu_t, idx_t = hyper(torch.tensor(z[None]).double(), torch.tensor(r[None]).double())
    assert np.array_equal(mu16, mu_t[0].numpy().astype(np.int64))
    assert np.array_equal(idx, idx_t[0].numpy().astype(np.int64))


def test_prepare_rejects_overflowing_weights():
    em = modelfile.load("grey")
    net = {k: (list(v) if isinstance(v, list) else v) for k, v in em.net.items()}
    layer = dict(net["trunk"][0])
    layer["weight"] = layer["weight"] * 10 ** 9
    net["trunk"] = [layer] + net["trunk"][1:]
    with pytest.raises(ModelError, match="overflow"):
        intnet.prepare(net)


def test_escape_coding_round_trips_extreme_values():
    em = modelfile.load("grey")
    rng = np.random.default_rng(2)
    z = rng.integers(-3, 4, (em.nz, 1, 1))
    z[0, 0, 0], z[1, 0, 0] = spec.Z_CLIP, -spec.Z_CLIP
    idx = rng.integers(0, spec.SCALE_LEVELS, (em.m, 4, 4))
    s = rng.integers(-3, 4, idx.shape)
    s[0, 0, 0], s[1, 1, 1] = spec.Y_CLIP, -spec.Y_CLIP
    words = entropy.encode_tile(z, s, idx, em.z_tables, em.y_tables)
    dec = entropy.TileDecoder(words, 0)
    assert np.array_equal(dec.z(z.shape, em.z_tables), z)
    assert np.array_equal(dec.y(idx, em.y_tables), s)


def test_tables_are_normalised_integer_counts():
    em = modelfile.load("grey")
    for tables in (em.y_tables, em.z_tables):
        for t in range(len(tables.sizes)):
            row = tables.counts[t, :tables.sizes[t] + 1]
            assert row.min() >= 1 and row.sum() == 2 ** spec.PROB_BITS


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("path", [GREY, COLOUR])
def test_rover_and_ground_entropy_parameters_identical(path, threads, default_library):
    """What the rover coded with (onnxruntime at 1 or 2 threads) is exactly what the ground derives."""
    analysis.analyzer.cache_clear()
    img = load_image(path)
    result = encode(img, EncodeOptions(5500, library=default_library, tile=128, threads=threads), keep_tiles=True)
    _, _, _, tiles, lost, problems = entropy_decode(result.data, default_library)
    assert not lost and not problems
    for (z, mu, idx, y_hat), (gz, gmu, gidx, gy_hat) in zip(result.tiles, (tiles[i] for i in sorted(tiles))):
        assert np.array_equal(z, gz)
        assert np.array_equal(mu, gmu) and np.array_equal(idx, gidx)
        assert np.array_equal(y_hat, gy_hat)
    analysis.analyzer.cache_clear()


def test_streams_from_one_and_two_threads_both_decode(default_library):
    img = load_image(GREY)
    analysis.analyzer.cache_clear()
    one = encode(img, EncodeOptions(4000, library=default_library, threads=1))
    analysis.analyzer.cache_clear()
    two = encode(img, EncodeOptions(4000, library=default_library, threads=2))
    analysis.analyzer.cache_clear()
    for r in (one, two):
        assert not entropy_decode(r.data, default_library)[4]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(1, 160), w=st.integers(1, 160), channels=st.sampled_from([1, 3]),
       quality=st.integers(0, 100), threads=st.sampled_from([1, 2]), smooth=st.booleans(),
       seed=st.integers(0, 2 ** 16), use_refs=st.booleans())
def test_property_rover_and_ground_agree_bit_for_bit(h, w, channels, quality, threads, smooth, seed, use_refs,
                                                     default_library):
    """Random sizes and contents: identical z_hat, entropy parameters and y_hat on both sides."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    if smooth:
        a = np.cumsum(a.astype(np.int64), axis=1) % 256
    img = from_pil(Image.fromarray(a.astype(np.uint8).squeeze(-1) if channels == 1 else a.astype(np.uint8)))
    opts = EncodeOptions(quality * 100, library=default_library if use_refs else None, tile=64, threads=threads)
    result = encode(img, opts, keep_tiles=True)
    _, _, _, tiles, lost, problems = entropy_decode(result.data, default_library)
    assert not lost and not problems
    for index, rover in enumerate(result.tiles):
        for mine, theirs in zip(rover, tiles[index]):
            assert np.array_equal(mine, theirs)
