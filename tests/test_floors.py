"""Scale-index floors per quality band: chosen per band by calibration, applied by the
rover and the ground alike after the integer network (bitstream.latent), carried in entropy.npz."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from remac.bitstream import entropy, latent, modelfile, spec
from remac.bitstream.errors import ModelError
from remac.bitstream.modelfile import canonical_digest
from remac.rover_encoder.encode import prepare
from remac.rover_encoder.imageio import load_image
from tests.conftest import GREY
from remac.rover_encoder.options import EncodeOptions


def test_floors_at_picks_the_band_of_a_quality():
    em = modelfile.load("grey")
    floors = np.arange(3)[:, None] * np.ones((1, em.m), np.int64)
    banded = replace(em, idx_floors=floors, floor_edges=np.array([500, 1750]))
    assert [int(banded.floors_at(q)[0]) for q in (0, 499, 500, 1749, 1750, 10000)] == [0, 0, 1, 1, 2, 2]
    assert replace(em, idx_floors=None, floor_edges=None).floors_at(5000) is None


def test_a_tile_coded_with_floors_decodes_exactly_and_its_indices_are_raised():
    em = modelfile.load("grey")
    from remac.rover_encoder.analysis import gain_for_quality
    prepared = prepare(load_image(GREY), EncodeOptions(tile=256))
    window, gain = prepared.windows[0], gain_for_quality(em, 2000)
    z = window.crop_z(prepared.analyzer.hyper(window.y_window, gain)).astype(np.float64)
    z = np.clip(np.floor(z + 0.5), -spec.Z_CLIP, spec.Z_CLIP).astype(np.int64)
    r, y_g = spec.ref_input(None, spec.gain_int_at(em.gain_int, 2000)), window.y * gain[:, None, None]
    floors = np.full(em.m, 9, np.int64)
    plain = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables)
    words, mu16, idx, symbols = latent.encode(em.net, z, r, y_g, em.z_tables, em.y_tables, floors)
    assert idx.min() >= 9 and (plain[2] < 9).any() and np.array_equal(idx, np.maximum(plain[2], 9))
    assert np.array_equal(symbols, plain[3]) and np.array_equal(mu16, plain[1])    # only probabilities move
    dec = entropy.TileDecoder(words, 0)
    assert np.array_equal(dec.z(z.shape, em.z_tables), z)
    mu_d, idx_d, s_d = latent.decode(dec, em.net, z, r, em.m, em.y_tables, floors)
    assert np.array_equal(s_d, symbols) and np.array_equal(idx_d, idx)


def test_band_floors_follow_each_qualitys_own_statistics():
    """A channel that is all zeros at the low quality and +-1 at the high one, predicted at the
    smallest scale both times, keeps no floor in the low band and gets one in the high band."""
    from training.calibrate import S_RANGE, band_floors, banded, cost_matrix
    cost = cost_matrix()
    hist = np.zeros((2, 1, cost.shape[0], 2 * S_RANGE + 1))
    hist[0, 0, 0, S_RANGE] = 1000                                                   # low quality: zeros
    hist[1, 0, 0, S_RANGE - 1] = hist[1, 0, 0, S_RANGE + 1] = hist[1, 0, 0, S_RANGE] = 100
    floors = band_floors(hist, cost)
    assert floors[0, 0] == 0 and floors[1, 0] > 10
    merged = banded(hist, floors)
    assert merged[0, 0].sum() == 1000 and merged[0, floors[1, 0]].sum() == 300


def _model_dir(tmp_path, change):
    """The shipped grey model's directory with its arrays changed by `change` and its ID refreshed."""
    src = modelfile.ASSETS / "grey"
    with np.load(src / "entropy.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    meta = json.loads((src / "model.json").read_text())
    meta["model_id"] = canonical_digest(arrays, meta).hex()
    np.savez_compressed(tmp_path / "entropy.npz", **arrays)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    return tmp_path


def _floors(idx=None, edges=None, chroma=None):
    """A _model_dir change: the model's floors arrays replaced by these (None: left out), and its
    spatial-context shifts, which live on the floors' bands, left out."""
    def change(arrays):
        arrays.pop("spatial/delta", None)
        for key, value in (("floors/idx", idx), ("floors/edges", edges), ("floors/chroma", chroma)):
            arrays.pop(key, None)
            if value is not None:
                arrays[key] = value
    return change


@pytest.mark.parametrize("floors,edges,message", [
    (np.zeros((3, 256), np.int64), np.array([500, 1750]), None),
    (np.zeros((3, 256), np.int64), None, "without their quality bands"),
    (np.zeros((2, 256), np.int64), np.array([500, 1750]), "do not fit"),
    (np.zeros((3, 256), np.int64), np.array([1750, 500]), "do not fit"),
    (np.full((3, 256), 64, np.int64), np.array([500, 1750]), "do not fit"),
])
def test_model_files_with_bad_floors_are_refused(tmp_path, floors, edges, message):
    folder = _model_dir(tmp_path, _floors(floors, edges))
    if message is None:
        assert modelfile.load_dir(folder).floors_at(600).shape == (256,)
    else:
        with pytest.raises(ModelError, match=message):
            modelfile.load_dir(folder)


def test_floor_modes_pooled_low_and_banded():
    """One channel, zeros at the two lowest qualities and +-1 above, all predicted at the smallest
    scale: "banded" floors it only above; "pooled" floors it everywhere (never below what it had);
    "low" keeps the banded floors up to quality 10 and the pooled ones above."""
    from training.calibrate import QUALITIES, S_RANGE, choose_floors, cost_matrix
    cost = cost_matrix()
    hist = np.zeros((len(QUALITIES), 1, cost.shape[0], 2 * S_RANGE + 1))
    hist[:2, 0, 0, S_RANGE] = 1000
    hist[2:, 0, 0, S_RANGE - 1:S_RANGE + 2] = 100
    banded = choose_floors(hist, cost, np.zeros(1, np.int64), "banded")[:, 0]
    pooled = choose_floors(hist, cost, np.zeros(1, np.int64), "pooled")[:, 0]
    low = choose_floors(hist, cost, np.zeros(1, np.int64), "low")[:, 0]
    assert list(banded[:2]) == [0, 0] and (banded[2:] > 10).all()
    assert (pooled == pooled[0]).all() and pooled[0] > 10
    assert list(low) == [0, 0] + list(pooled[2:])
    assert (choose_floors(hist, cost, np.array([40]), "pooled") == 40).all()     # the pooled rule never drops


def test_chroma_planes_have_their_own_floors_where_the_model_has_them():
    em = modelfile.load("grey")
    luma, chroma = np.zeros((2, em.m), np.int64), np.full((2, em.m), 7, np.int64)
    split = replace(em, idx_floors=luma, floor_edges=np.array([500]), chroma_floors=chroma)
    assert int(split.floors_at(600, chroma=True)[0]) == 7 and int(split.floors_at(600)[0]) == 0
    assert int(replace(split, chroma_floors=None).floors_at(600, chroma=True)[0]) == 0


@pytest.mark.parametrize("chroma,floors,message", [
    (np.zeros((2, 256), np.int64), np.zeros((3, 256), np.int64), "do not fit"),
    (np.full((3, 256), -1, np.int64), np.zeros((3, 256), np.int64), "do not fit"),
    (np.zeros((3, 256), np.int64), None, "without their quality bands"),
])
def test_model_files_with_bad_chroma_floors_are_refused(tmp_path, chroma, floors, message):
    edges = None if floors is None else np.array([500, 1750])
    with pytest.raises(ModelError, match=message):
        modelfile.load_dir(_model_dir(tmp_path, _floors(floors, edges, chroma)))


def test_a_colour_stream_with_chroma_floors_decodes_to_the_rovers_latents(tmp_path):
    """Rover and ground both give Cb and Cr their own floors (and luma its own)."""
    from remac.ground_decoder.decode import entropy_decode
    from tests.conftest import COLOUR
    em = modelfile.load("grey")
    store = tmp_path / "store"
    staging = _model_dir(tmp_path, _floors(np.zeros((2, em.m), np.int64), np.array([500]),
                                           np.full((2, em.m), 12, np.int64)))
    folder = store / json.loads((staging / "model.json").read_text())["model_id"]
    folder.mkdir(parents=True)
    for name in ("model.json", "entropy.npz"):
        (folder / name).write_bytes((staging / name).read_bytes())
    for name in ("encoder.onnx", "encoder.int8.onnx"):     # the shipped rover encoder, unchanged
        (folder / name).symlink_to(Path(__file__).resolve().parent.parent / "rover_encoder/assets/grey" / name)
    result = prepare(load_image(COLOUR), EncodeOptions(tile=128, model=folder)).encode(3000, keep_tiles=True)
    parsed, model, _, tiles, lost, problems = entropy_decode(result.data, models=(store,))
    assert model.chroma_floors is not None and not lost and not problems
    luma_tiles = parsed.header.plane(0).tile_count
    assert len(tiles) == len(result.tiles) == sum(parsed.header.plane(k).tile_count for k in range(3))
    for index, coded in enumerate(result.tiles):
        idx = tiles[index][2]
        assert np.array_equal(idx, coded[2]) and np.array_equal(tiles[index][3], coded[3])
        assert (idx.min() >= 12) == (index >= luma_tiles)       # chroma floors on Cb, Cr only


def test_the_split_rule_floors_luma_and_chroma_each_by_its_own_symbols():
    """Luma: +-1 at every quality at the smallest predicted scale -> floored high in every band;
    chroma: zeros there -> no floor; both are coded with the tables fitted to the two together."""
    from training.calibrate import QUALITIES, S_RANGE, cost_matrix, split_floors
    shape = (len(QUALITIES), 1, cost_matrix().shape[0], 2 * S_RANGE + 1)
    luma, chroma = np.zeros(shape), np.zeros(shape)
    luma[:, 0, 0, S_RANGE - 1:S_RANGE + 2] = 100
    chroma[:, 0, 0, S_RANGE] = 1000
    floors, floors_c, counts, deltas = split_floors(luma, chroma)
    assert deltas is None                   # no spatial context without its histograms
    assert (floors > 10).all() and (floors_c == 0).all()
    k = int(floors[0, 0])               # luma's +-1 fitted into that table: cheaper than the Gaussian's
    assert cost_matrix(counts)[k, S_RANGE + 1] < cost_matrix()[k, S_RANGE + 1] - 0.2
