"""Spatial context: channel 0 coded in three passes, each predicted from the decoded
ones before it (bitstream.spatial), identically on rover and ground and in the torch model."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from remac.bitstream import entropy, latent, modelfile, spatial, spec
from remac.bitstream.errors import ModelError
from tests.test_floors import _model_dir
from tests.test_rdo import _tile


def test_passes_cover_the_grid_in_a_checkerboard_of_three():
    which = spatial.pass_of(5, 4)
    assert which.tolist() == [[0, 2, 0, 2], [2, 1, 2, 1], [0, 2, 0, 2], [2, 1, 2, 1], [0, 2, 0, 2]]


def test_context_rounds_the_neighbour_mean_half_up_and_classes_their_spread():
    """Pass 1 at (1, 1) sees its four diagonal pass-0 neighbours; at the border only those inside."""
    e16 = np.zeros((3, 3), np.int64)
    e16[0, 0], e16[0, 2], e16[2, 0], e16[2, 2] = 16, 16, 16, 18      # sum 66 / 4 = 16.5 -> 17
    known = spatial.pass_of(3, 3) == 0
    dmu, cls = spatial.context(e16, known, 1)
    assert dmu[1, 1] == 17 and cls[1, 1] == 0                       # spread 2/16 of a symbol: class 0
    e16[2, 2] = 16 + 16 * 9                                          # one neighbour 9 symbols away
    dmu, cls = spatial.context(e16, known, 1)
    assert cls[1, 1] == 4                                           # 8 <= 9 < 16
    dmu, cls = spatial.context(-e16, known, 1)
    assert dmu[1, 1] == -(4 * 16 + 16 * 9) // 4                     # -52: exact, half up
    dmu, _ = spatial.context(e16, known, 2)                          # (0, 1): neighbours (0, 0), (0, 2)
    assert dmu[0, 1] == 16


def test_a_tile_with_spatial_context_decodes_exactly_and_predicts_the_block_means():
    em, z, r, y_g = _tile()
    floors = em.floors_at(2000)
    delta = np.stack([np.arange(-8, 0), np.arange(-12, -4)]).astype(np.int64)     # (2, CLASSES)
    plain = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables, floors, 0.05)
    words, mu16, idx, symbols = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables, floors, 0.05, delta)
    dec = entropy.TileDecoder(words, 0)
    assert np.array_equal(dec.z(z.shape, em.z_tables), z)
    mu_d, idx_d, s_d = latent.decode(dec, em.net, z, r, em.m, em.y_tables, floors, delta)
    assert np.array_equal(s_d, symbols) and np.array_equal(mu_d, mu16) and np.array_equal(idx_d, idx)
    # channel 0's passes 1, 2 move; slice 0's other channels, and pass 0, keep the hyperprior's
    # parameters (later slices read channel 0's decoded values, so their corrections move too)
    which, s1 = spatial.pass_of(*mu16.shape[1:]), em.net["slices"][1]
    assert np.array_equal(mu16[1:s1], plain[1][1:s1]) and np.array_equal(idx[1:s1], plain[2][1:s1])
    assert np.array_equal(mu16[0][which == 0], plain[1][0][which == 0])
    # the neighbours predict the block means far better than the hyperprior (measured: 5-20x less residual power)
    later = which > 0
    assert np.abs(symbols[0][later]).sum() < 0.6 * np.abs(plain[3][0][later]).sum()
    assert (idx[0][later] < plain[2][0][later]).all()               # all shifts negative here


def test_torch_model_shifts_the_means_exactly_as_the_coder():
    """models.hyper.spatial_means (training, calibration) against bitstream.latent without RDO."""
    from remac.models.hyper import spatial_means
    em, z, r, y_g = _tile(35)
    delta = np.zeros((2, spatial.CLASSES), np.int64)
    _, mu16, _, symbols = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables, None, 0.0, delta)
    _, hyper, _, _ = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables)
    lo, hi = em.net["out"]["lo"][0], em.net["out"]["hi"][0]
    shift, which, cls = spatial_means(torch.from_numpy(hyper[0:1]).float(), torch.from_numpy(y_g[0:1]), lo, hi)
    assert torch.equal(shift[0].long(), torch.from_numpy(mu16[0] - hyper[0]))
    assert torch.equal(which, torch.from_numpy(spatial.pass_of(*mu16.shape[1:])))
    e16 = 16 * symbols[0] + mu16[0] - hyper[0]
    _, cls2 = spatial.context(e16, which.numpy() != 2, 2)
    assert torch.equal(cls[0][which == 2], torch.from_numpy(cls2)[which == 2])


def test_spatial_at_picks_the_band_and_model_files_check_the_shape(tmp_path):
    em = modelfile.load("grey")
    bands = len(em.floor_edges) + 1
    table = np.arange(bands)[:, None, None] * -np.ones((1, 2, spatial.CLASSES), np.int64)
    assert replace(em, spatial=table).spatial_at(10000)[0, 0] == -(bands - 1)
    assert replace(em, spatial=None).spatial_at(5000) is None

    def change(arrays, value):
        arrays["spatial/delta"] = value
    for sub in ("good", "bad1", "bad2"):
        (tmp_path / sub).mkdir()
    good = _model_dir(tmp_path / "good", lambda a: change(a, table))
    assert modelfile.load_dir(good).spatial_at(0).shape == (2, spatial.CLASSES)
    for bad in (table[:, :1], np.full_like(table, 64)):
        with pytest.raises(ModelError, match="spatial context"):
            modelfile.load_dir(_model_dir(tmp_path / f"bad{bad.shape[1]}", lambda a, v=bad: change(a, v)))
