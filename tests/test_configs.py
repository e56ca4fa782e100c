"""Every shipped training config loads (base + overrides, training.config.load_config) and builds its
model (training.train.model_for_config), without data: the cheapest real check of a config."""
import json

import pytest

pytest.importorskip("torch")

from training import CONFIGS  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import train_folders  # noqa: E402
from training.train import batch_shape, model_for_config  # noqa: E402

SHIPPED = sorted(CONFIGS.glob("*.json"))
REQUIRED = ("name", "channels", "train_folders", "val_folders", "crop", "batch", "lr", "lr_final", "final_fraction",
            "ref_dropout", "seed", "eval_every", "checkpoint_every")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_config_builds_its_model(path):
    cfg = load_config(path)
    assert "base" not in cfg and all(key in cfg for key in REQUIRED), sorted(cfg)
    assert batch_shape(cfg, 0)[0] >= 1
    model = model_for_config(cfg)
    assert model.channels == cfg["channels"] and model.arch == cfg.get("arch", "gdn")
    if "encoder_width" in cfg:
        assert model.encoder.width == cfg["encoder_width"]


def test_a_config_is_its_base_updated_by_its_own_keys(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"name": "grey", "lr": 1, "seed": 3}))
    (tmp_path / "b.json").write_text(json.dumps({"base": "a.json", "lr": 2, "crop": 64}))
    (tmp_path / "c.json").write_text(json.dumps({"base": "b.json", "seed": 4}))
    assert load_config(tmp_path / "c.json") == {"name": "grey", "lr": 2, "seed": 4, "crop": 64}


def test_the_running_gridfree_config_keeps_its_values():
    """grey_gridfree is the run in progress: written as overrides of grey_lap, it is the same config."""
    assert load_config(CONFIGS / "grey_gridfree.json") == {
        "name": "grey", "arch": "klt", "channels": 1,
        "train_folders": ["train/gray", "train/gray_native", "train/color", "sites/train"], "val_folders": ["val/gray"],
        "crop": 128, "ref_crop": 128, "batch": 8, "lr": 2e-05, "lr_final": 5e-06, "final_fraction": 0.3,
        "ref_dropout": 0.15, "ref_selection": "descriptor", "seed": 3, "eval_every": 1000, "checkpoint_every": 500,
        "slices": [0, 16, 64, 256], "large_crop": 192, "large_every": 2, "frame_check": "val/gray_native",
        "lap": 8, "decoder_lap": 8, "folder_weights": {"train/color": 1.5}, "downsampled": 0.3}


def test_the_shipped_models_training_folders_come_from_its_recipe():
    assert train_folders("grey") == ["train/gray", "train/gray_native", "train/color"]
    with pytest.raises(SystemExit, match="no training recipe"):
        train_folders("colour")
