"""Every release stays decodable: a stream of a model this installation does not ship as default
decodes from a model store (bitstream.store; remac-decode --models DIR), and the rover can run a
model directory (remac-encode --model DIR)."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from remac.bitstream import modelfile, store
from remac.bitstream.errors import ModelError
from remac.bitstream.modelfile import canonical_digest
from remac.rover_encoder.analysis import ASSETS as ROVER_ASSETS
from tests.conftest import GREY, pixels, psnr

torch = pytest.importorskip("torch")

from remac.ground_decoder.cli import decode_main  # noqa: E402
from remac.models.ground import ground_weights_path  # noqa: E402
from remac.rover_encoder.cli import encode_main  # noqa: E402


def other_release(tmp_path):
    """A model directory for a 'release' that differs from the shipped grey model (its quality-50
    gains one step higher: valid, decodable, another model ID), with the shipped encoder and decoder."""
    src = modelfile.ASSETS / "grey"
    folder = tmp_path / "release"
    folder.mkdir()
    with np.load(src / "entropy.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["gain_int"] = arrays["gain_int"].copy()
    arrays["gain_int"][50] += 1
    meta = json.loads((src / "model.json").read_text())
    meta["model_id"] = canonical_digest(arrays, meta).hex()
    np.savez_compressed(folder / "entropy.npz", **arrays)
    (folder / "model.json").write_text(json.dumps(meta))
    for name in ("encoder.onnx", "encoder.int8.onnx"):
        shutil.copyfile(ROVER_ASSETS / "grey" / name, folder / name)
    return folder, meta["model_id"]


def test_a_stream_of_another_release_decodes_from_its_store(tmp_path):
    folder, model_id = other_release(tmp_path)
    assert model_id != modelfile.load("grey").model_id.hex()
    runner = CliRunner()
    stream = tmp_path / "old.rmc"
    r = runner.invoke(encode_main, [str(GREY), "-q", "50", "--no-refs", "--model", str(folder), "-o", str(stream)])
    assert r.exit_code == 0, r.output
    # without its store: one line naming the model
    r = runner.invoke(decode_main, [str(stream), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and f"stream needs model {model_id}" in r.output and "--models" in r.output
    assert not (tmp_path / "x.png").exists()
    # file the release (with a ground decoder tagged with its model ID) into a store: it decodes
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(str(ground_weights_path("grey")), framework="pt") as f:
        tag = {**f.metadata(), "model_id": model_id}
    save_file(load_file(str(ground_weights_path("grey"))), str(folder / "decoder.safetensors"), metadata=tag)
    store.release(tmp_path / "store", model_id, {name: folder / name for name in
                                                 ("model.json", "entropy.npz", "decoder.safetensors")})
    r = runner.invoke(decode_main, [str(stream), "--models", str(tmp_path / "store"), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 0, r.output
    from PIL import Image
    assert psnr(pixels(GREY), np.asarray(Image.open(tmp_path / "x.png"))) > 24


def test_a_model_directory_must_code_the_images_channels(tmp_path):
    from remac.rover_encoder.analysis import rover_model
    folder, _ = other_release(tmp_path)
    assert rover_model(1, folder).folder == folder
    with pytest.raises(ModelError, match="codes 1-channel images, not 3"):
        rover_model(3, folder)


def test_the_store_files_releases_in_order_and_prunes_the_oldest(tmp_path):
    from remac.bitstream import store
    src = tmp_path / "src.json"
    src.write_text("{}")
    for model_id in ("aa", "bb", "cc"):
        store.release(tmp_path / "store", model_id, {"model.json": src})
    store.release(tmp_path / "store", "aa", {"model.json": src})       # filed again: keeps its place
    assert [store.sequence_of(tmp_path / "store" / m / "model.json") for m in ("aa", "bb", "cc")] == [1, 2, 3]
    assert store.prune(tmp_path / "store", 2) == ["aa"]
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["bb", "cc"]
    assert store.prune(tmp_path / "store", 2) == []


def test_every_release_in_the_shipped_store_knows_its_place():
    from remac.bitstream import store
    from remac.models.ground import STORE
    entries = sorted(STORE.glob("*/model.json"))
    assert entries and sorted(store.sequence_of(m) for m in entries)[0] >= 1
