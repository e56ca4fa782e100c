"""Rover-side rate-distortion quantization (entropy.rdo_symbols): the encoder alone chooses the
symbols, so the stream stays exactly decodable; the choice only ever moves a symbol one step
towards zero, and only where that lowers squared error + lam * bits."""
import numpy as np

from remac.bitstream import entropy, latent, modelfile, spec
from remac.rover_encoder.analysis import gain_for_quality
from remac.rover_encoder.encode import prepare
from remac.rover_encoder.imageio import load_image
from tests.conftest import GREY
from remac.rover_encoder.options import EncodeOptions


def _tile(quality=20):
    em = modelfile.load("grey")
    prepared = prepare(load_image(GREY), EncodeOptions(tile=256))
    window, gain = prepared.windows[0], gain_for_quality(em, quality * spec.QUALITY_STEPS)
    z = window.crop_z(prepared.analyzer.hyper(window.y_window, gain)).astype(np.float64)
    z = np.clip(np.floor(z + 0.5), -spec.Z_CLIP, spec.Z_CLIP).astype(np.int64)
    r = spec.ref_input(None, spec.gain_int_at(em.gain_int, quality * spec.QUALITY_STEPS))
    return em, z, r, window.y * gain[:, None, None]


def test_rdo_moves_symbols_towards_zero_only_where_the_cost_drops():
    rng = np.random.default_rng(0)
    em = modelfile.load("grey")
    y_g = rng.normal(0, 2, (8, 6, 6))
    mu16 = rng.integers(-20, 20, y_g.shape)
    idx = rng.integers(0, spec.SCALE_LEVELS, y_g.shape)
    plain = entropy.symbols_for(y_g, mu16)
    assert np.array_equal(entropy.rdo_symbols(y_g, mu16, idx, em.y_tables, 0.0), plain)
    s = entropy.rdo_symbols(y_g, mu16, idx, em.y_tables, 0.5)
    moved = s != plain
    assert moved.any() and np.array_equal(s[moved], plain[moved] - np.sign(plain[moved]))
    r = y_g - mu16 / 16
    cost = lambda v: (r - v) ** 2 + 0.5 * entropy.symbol_bits(v, idx, em.y_tables)
    assert (cost(s) <= cost(plain)).all() and (cost(s)[moved] < cost(plain)[moved]).all()


def test_a_tile_quantized_with_rdo_decodes_exactly_and_is_smaller():
    em, z, r, y_g = _tile()
    words0, _, _, plain = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables)
    words, mu16, idx, symbols = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables, rdo=0.1)
    assert len(words) < len(words0) and not np.array_equal(symbols, plain)
    dec = entropy.TileDecoder(words, 0)
    assert np.array_equal(dec.z(z.shape, em.z_tables), z)
    mu_d, idx_d, s_d = latent.decode(dec, em.net, z, r, em.m, em.y_tables)
    assert np.array_equal(s_d, symbols) and np.array_equal(mu_d, mu16) and np.array_equal(idx_d, idx)
