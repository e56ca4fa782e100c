"""The GPU burst (scripts/gpu_train.sh) runs from a data pack alone: a 20-step CPU dry run."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import pack, train  # noqa: E402

DATA = Path(__file__).parent / "data"
CONFIG = {"name": "grey", "arch": "klt", "channels": 1, "train_folders": [], "val_folders": [], "crop": 64,
          "ref_crop": 64, "batch": 2, "lr": 2e-4, "lr_final": 2e-5, "final_fraction": 0.1, "ref_dropout": 0.15,
          "ref_selection": "descriptor", "seed": 3, "eval_every": 10, "checkpoint_every": 10, "klt_patches": 5000}


def _images():
    from PIL import Image
    im = np.asarray(Image.open(DATA / "navcam_gray.png").convert("L"))
    crops = [im[r:r + 256, c:c + 256] for r in (0, im.shape[0] - 256) for c in (0, im.shape[1] - 256)]
    return torch.from_numpy(np.stack(crops))[:, None]


def test_pack_round_trips_images_and_groups(tmp_path):
    images = _images()
    path = pack.write(str(tmp_path / "p.npz"), images[1:], [("a", 1), ("a", 1), ("b", 2)], images[:1])
    train_images, groups, val = pack.load_pack(path)
    assert torch.equal(train_images, images[1:]) and torch.equal(val, images[:1])
    assert groups[0] == groups[1] != groups[2]


def _dry_run(tmp_path):
    """-> (train.main arguments of a run "dry" from a pack of the test image, its --out folder)."""
    images = _images()
    path = pack.write(str(tmp_path / "grey.npz"), images, [(0, 0), (0, 0), (1, 0), (1, 0)], images[:2])
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(CONFIG))
    out = tmp_path / "out"
    return [str(config), "--run-name", "dry", "--pack", path, "--out", str(out)], out


def test_twenty_step_dry_run_from_a_pack(tmp_path):
    run, out = _dry_run(tmp_path)
    args = run + ["--steps", "20", "--threads", "1", "--precision", "fp32", "--minutes", "10"]
    train.main(args)
    log = (out / "dry.csv").read_text().splitlines()
    assert log[0].startswith("info,0,") and ",precision,fp32," in log[0]
    assert sum(row.startswith("val,20,") for row in log) == 3            # q10/50/90 at step 20
    state = torch.load(out / "dry.opt.pt")
    assert state["step"] == 20
    train.main(args[:-6] + ["--steps", "5", "--threads", "1", "--precision", "fp32"])   # resumes from --out
    assert torch.load(out / "dry.opt.pt")["step"] == 25


def test_a_promoted_run_goes_on_from_the_shipped_checkpoint(tmp_path, capsys):
    """promote installs a run's checkpoint as the shipped one and deletes the run's copy; the next
    chunk of the run (its log still there) starts from the shipped weights, not from scratch."""
    from safetensors.torch import load_file
    run, out = _dry_run(tmp_path)
    args = run + ["--threads", "1", "--precision", "fp32", "--minutes", "10", "--steps"]
    train.main(args + ["10"])
    (out / "dry.safetensors").rename(out / "grey.safetensors")          # what promote leaves behind
    (out / "dry.opt.pt").unlink()                                       # a fresh machine: no Adam state
    shipped = load_file(str(out / "grey.safetensors"))
    capsys.readouterr()
    train.main(args + ["1"])
    assert "from the promoted" in capsys.readouterr().out
    # the step count goes on from the shipped checkpoint's (10), where a fresh run would be at 1
    assert torch.load(out / "dry.opt.pt")["step"] == 11
    resumed = load_file(str(out / "dry.safetensors"))
    assert all((resumed[k].float() - v.float()).abs().max() < 1e-2 for k, v in shipped.items() if k in resumed)



def test_a_run_not_promoted_goes_on_from_the_shipped_weights_with_a_fresh_adam(tmp_path, capsys):
    """Its checkpoint removed, the run's optimizer state (of its own later step) does not belong to
    the shipped weights: Adam warm-starts and the step count is the shipped checkpoint's."""
    run, out = _dry_run(tmp_path)
    args = run + ["--threads", "1", "--precision", "fp32", "--minutes", "10", "--steps"]
    train.main(args + ["4"])
    (out / "dry.safetensors").rename(out / "grey.safetensors")          # the shipped one: step 4
    train.main(args + ["3"])                                            # the run goes on: step 7
    (out / "dry.safetensors").unlink()                                  # not promoted: removed
    capsys.readouterr()
    train.main(args + ["1"])
    assert "optimizer state is of step 7, the weights of step 4: Adam warm-starts" in capsys.readouterr().out
    assert torch.load(out / "dry.opt.pt")["step"] == 5

def test_promotion_is_decided_on_the_grid_free_and_colour_sets_and_guarded_on_the_aligned_ones():
    from training.promote import ALIGNED_SLACK, DECISION_SETS, promotes
    from training.rank import RANKED_SETS
    curve = lambda top: [(0.1, 30.0), (0.5, 35.0), (1.5, top)]
    result = lambda head, top=41.6: {"candidate_vs_shipped": head, "candidate": curve(top), "shipped": curve(41.7)}
    assert set(DECISION_SETS) < set(RANKED_SETS["grey"])
    aligned = [k for k in RANKED_SETS["grey"] if k not in DECISION_SETS]
    assert aligned == ["val/gray", "val/gray_native"]
    better = {k: result(-0.5) for k in DECISION_SETS} | {k: result(0.0) for k in aligned}
    assert promotes(better)[0]
    assert not promotes(better | {DECISION_SETS[0]: result(+4.0)})[0]             # the mean turns positive
    assert promotes(better | {DECISION_SETS[0]: result(+1.0)})[0]                 # one set worse, the mean still better
    assert not promotes(better | {"val/gray": result(ALIGNED_SLACK + 0.1)})[0]    # an aligned set worse
    assert not promotes(better | {DECISION_SETS[1]: result(-2.0, top=38.0)})[0]   # cheaper, but 3.7 dB lower at the top
    assert not promotes(better | {DECISION_SETS[2]: result(None)})[0]             # no overlap: no verdict


def test_the_tracked_tree_leaves_room_for_a_useful_data_pack():
    """The device copy is the tracked tree plus the pack, 64 MiB in all: the default pack size is
    what the tree leaves, and it must stay big enough to train on (>= 12 MiB: ~300 deflated 256-px crops)."""
    from training.pack import DEVICE_MIB, room_mib, tracked_bytes
    room = room_mib()
    assert room >= 12, f"tracked tree {tracked_bytes() / 2 ** 20:.1f} MiB leaves a {room:.1f} MiB pack"
    assert tracked_bytes() / 2 ** 20 + room < DEVICE_MIB


def test_config_lap_widens_a_resumed_run_to_a_lapped_transform(tmp_path):
    """configs "lap", "decoder_lap": a run trained with 16x16 blocks goes on as a lapped transform:
    the kernels grow to 16 + 2 lap with their trained centres kept, Adam's moments padded, the step
    count kept."""
    from safetensors.torch import load_file
    run, out = _dry_run(tmp_path)
    args = run + ["--threads", "1", "--precision", "fp32", "--minutes", "10", "--steps"]
    train.main(args + ["10"])
    before = load_file(str(out / "dry.safetensors"))["encoder.proj.weight"]
    (tmp_path / "cfg.json").write_text(json.dumps({**CONFIG, "lap": 4, "decoder_lap": 8}))
    train.main(args + ["2"])
    state = load_file(str(out / "dry.safetensors"))
    after = state["encoder.proj.weight"]
    assert before.shape[-1] == 16 and after.shape[-1] == 24 and state["decoder.synth_lin.weight"].shape[-1] == 32
    assert torch.load(out / "dry.opt.pt")["step"] == 12
    assert (after[..., 4:20, 4:20].float() - before.float()).abs().max() < 0.05      # two small steps on


def test_a_decoder_stage_trains_an_overlay_that_promote_lays_over_the_shipped_model(tmp_path, monkeypatch, capsys):
    """--stage decoder: a heavier decoder on the shipped model's frozen latents, saved as an overlay
    (decoder + inverse gains) that resumes on its own; promote's candidate is the shipped checkpoint
    with that decoder, and it codes exactly as the shipped one (same model ID, no store release)."""
    from safetensors.torch import load_file
    from remac.models.codec import latent_digest
    from training import promote
    run, out = _dry_run(tmp_path)
    args = run + ["--threads", "1", "--precision", "fp32", "--minutes", "10", "--steps"]
    train.main(args + ["4"])
    shipped = out / "grey.safetensors"
    (out / "dry.safetensors").rename(shipped)
    monkeypatch.setattr(train, "WEIGHTS", out)
    heavy = run[:2] + ["dry_heavy"] + run[3:] + ["--stage", "decoder", "--decoder-extra", "0,0,0,1"] + args[len(run):]
    train.main(heavy + ["2"])
    train.main(heavy + ["1"])                                           # resumes from its own overlay
    assert torch.load(out / "dry_heavy.opt.pt")["step"] == 3
    overlay = load_file(str(out / "dry_heavy.safetensors"))
    base = load_file(str(shipped))
    assert set(overlay) - {"log_inv_gain"} == {k for k in overlay if k.startswith("decoder.")}
    assert "decoder.x2.0.c1.weight" in overlay and "decoder.x2.0.c1.weight" not in base
    monkeypatch.setattr(promote, "checkpoint_path", lambda name: shipped)
    candidate = tmp_path / "candidate.safetensors"
    assert promote.write_candidate("grey", out / "dry_heavy.safetensors", candidate)
    merged = load_file(str(candidate))
    assert latent_digest(merged) == latent_digest(base) and "decoder.x2.0.c1.weight" in merged
    assert promote.same_bitstream(candidate, shipped)
    assert not promote.same_bitstream(out / "dry_heavy.safetensors", shipped)


def test_an_install_stopped_midway_keeps_the_run_checkpoint(tmp_path, monkeypatch):
    """promote.install removes the run's own checkpoint only once every artifact is rebuilt: an
    install that fails (or is stopped) on the way leaves the run resumable, its decoder included
    (an install stopped after the export had stripped the decoder from the run's checkpoint)."""
    import subprocess
    from training import promote
    shipped, run, calibrated = (tmp_path / f"{n}.safetensors" for n in ("grey", "grey_run", "calibrated"))
    for path in (shipped, run, calibrated):
        path.write_bytes(b"weights")
    monkeypatch.setattr(promote, "checkpoint_path", lambda name: shipped)
    monkeypatch.setattr(promote, "same_bitstream", lambda a, b: True)     # no store release
    monkeypatch.setattr(promote.store, "prune", lambda *a: [])

    def artifacts_fail(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd)
    monkeypatch.setattr(promote.subprocess, "run", artifacts_fail)
    with pytest.raises(subprocess.CalledProcessError):
        promote.install("grey", calibrated, tmp_path, run)
    assert run.exists()
    monkeypatch.setattr(promote.subprocess, "run", lambda cmd, **kw: None)
    promote.install("grey", calibrated, tmp_path, run)
    assert not run.exists() and shipped.exists()
