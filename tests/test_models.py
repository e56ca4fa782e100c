"""PyTorch side: the training objective runs, the heavy decoder grows from the trained one."""
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from remac.models.codec import REMAC  # noqa: E402
from training.train import lambda_for_quality, rd_loss  # noqa: E402


def test_one_training_step_reduces_nothing_to_nan():
    torch.manual_seed(0)
    model = REMAC(1)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x, ref = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    loss, mse, bpp = rd_loss(model, x, ref, torch.tensor([10.0, 90.0]), torch.tensor([True, False]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and (bpp > 0).all() and (mse > 0).all()


def test_lambda_interpolation_hits_the_levels():
    from remac.models.codec import LAMBDAS
    assert lambda_for_quality(torch.tensor([0.0]))[0] == pytest.approx(LAMBDAS[0])
    assert lambda_for_quality(torch.tensor([100.0]))[0] == pytest.approx(LAMBDAS[-1], rel=1e-5)


def test_heavy_decoder_starts_as_the_trained_one():
    """Stage 2 of the asymmetric schedule: extra and wide blocks are identity-initialised, and the
    block layout is read back from the weights alone."""
    from remac.models.ref_decoder import decoder_layout
    base = REMAC(3).eval()
    heavy = REMAC(3, decoder_extra=(2, 2, 2, 2), decoder_wide=(0, 1, 0, 2)).eval()
    missing, unexpected = heavy.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("decoder.x", "decoder.w")) for k in missing)
    assert heavy.decoder.w2[0].c1.out_channels == 2 * 32
    y, ref = torch.randn(1, 128, 4, 4), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(base.decoder(y, ref), heavy.decoder(y, ref))
    plain = {"decoder_width": (128, 96, 64, 32), "decoder_skip": False, "decoder_lap": 0}
    assert decoder_layout(heavy.state_dict()) == {"decoder_extra": (2, 2, 2, 2), "decoder_wide": (0, 1, 0, 2), **plain}
    assert decoder_layout(base.state_dict()) == {"decoder_extra": (0, 0, 0, 0), "decoder_wide": (0, 0, 0, 0), **plain}


def _tiny_images():
    """(3,1,256,256) uint8 from the test data: enough patches for a 256x256 KLT."""
    import numpy as np
    from PIL import Image
    from pathlib import Path
    im = np.asarray(Image.open(Path(__file__).parent / "data" / "navcam_gray.png").convert("L"))
    crops = [im[r:r + 256, c:c + 256] for r, c in ((0, 0), (im.shape[0] - 256, 0), (0, im.shape[1] - 256))]
    return torch.from_numpy(np.stack(crops))[:, None]


def test_klt_codec_starts_as_a_perfect_linear_block_codec():
    """arch "klt": the encoder is the orthonormal KLT of 16x16 patches (M = 256 keeps all of them)
    and the decoder its exact inverse plus a zero-initialised correction, so before any training
    the unquantized latent reconstructs the image (the older GDN codec capped PSNR at
    ~35 dB on val/gray even unquantized)."""
    from training.data import klt_basis
    basis = klt_basis(_tiny_images(), patches=20_000)
    assert torch.allclose(basis @ basis.T, torch.eye(256), atol=1e-5)
    model = REMAC(1, arch="klt").eval()
    model.init_basis(basis)
    x = _tiny_images()[:1, :, :64, :64].float() / 255
    with torch.no_grad():
        y, _ = model.encoder.analysis(x)
        x_hat = model.decoder(y, torch.zeros(1, 1, 64, 64))
    assert y.shape == (1, 256, 4, 4)
    assert (x_hat - x).abs().max() < 1e-5
    # strongest first: the first (DC-like) coefficient carries far more energy than the last
    assert y[:, 0].pow(2).mean() > 100 * y[:, -1].pow(2).mean()


def test_lapped_transform_starts_as_the_block_transform_it_widens():
    """with_lap: a trained 16x16 block transform becomes a 32x32 lapped one (lap 8) with the same
    y for the same image, so a chunk can widen it and only gain; the outer taps then get gradients,
    and Adam's saved moments of the old kernel land in the centre (train.pad_moments)."""
    from remac.models.codec import architecture
    from training.surgery import with_lap
    from training.train import pad_moments
    torch.manual_seed(0)
    block = REMAC(1, arch="klt").eval()
    with torch.no_grad():
        block.encoder.rest[-1].weight.normal_(0, 0.01)      # a trained-looking nonlinear branch
    state = with_lap(block.state_dict(), 8, 8)
    lapped = REMAC(1, **architecture(state)).eval()
    lapped.load_state_dict(state)
    assert lapped.encoder.proj.weight.shape == (256, 1, 32, 32) and architecture(state)["lap"] == 8
    assert lapped.decoder.synth_lin.weight.shape == (256, 1, 32, 32) and architecture(state)["decoder_lap"] == 8
    x = _tiny_images()[:1, :, :64, :96].float() / 255
    y0, _ = block.encoder.analysis(x)
    y1, _ = lapped.encoder.analysis(x)
    assert y1.shape == y0.shape == (1, 256, 4, 6)
    assert (y1 - y0).abs().max() < 1e-4
    with torch.no_grad():       # the synthesis half: the same image from the same latent
        ref = torch.rand(1, 1, 64, 64)
        assert (lapped.decoder(y0, ref) - block.decoder(y0, ref)).abs().max() < 1e-4
    y1.pow(2).sum().backward()
    assert lapped.encoder.proj.weight.grad[:, :, :8].abs().sum() > 0      # the new taps learn
    w = lapped.encoder.proj.weight
    opt = torch.optim.Adam([w])
    opt.state[w] = {"exp_avg": torch.ones(256, 1, 16, 16), "exp_avg_sq": torch.ones(256, 1, 16, 16), "step": torch.tensor(3.0)}
    pad_moments(opt)
    assert opt.state[w]["exp_avg"].shape == w.shape
    assert opt.state[w]["exp_avg"][:, :, 8:24, 8:24].min() == 1 and opt.state[w]["exp_avg"].sum() == 256 * 256
    assert opt.state[w]["exp_avg_sq"].max() == 100      # new taps: a warm-up (100 x the old ones' mean), not 0


def test_widened_correction_branch_keeps_y_and_learns():
    """with_width: the klt encoder's correction branch grows from 64 to 96 channels with the same y
    for the same image (the new channels feed only zero weights), the weights reading the new
    channels get gradients, architecture() reads the width back, and Adam's saved moments land in
    the corner with a warm-up second moment for the new entries (train.pad_moments)."""
    from remac.models.codec import architecture
    from training.surgery import with_width
    from training.train import LAP_WARMUP, pad_moments
    torch.manual_seed(0)
    narrow = REMAC(1, arch="klt").eval()
    with torch.no_grad():
        narrow.encoder.rest[-1].weight.normal_(0, 0.01)     # a trained-looking nonlinear branch
    state = with_width(narrow.state_dict(), 96)
    assert architecture(state)["encoder_width"] == 96 and with_width(state, 64) is state
    wide = REMAC(1, **architecture(state)).eval()
    wide.load_state_dict(state)
    assert wide.encoder.rest[2].weight.shape == (96, 96, 5, 5) and wide.encoder.rest[4].weight.shape == (256, 96, 5, 5)
    x = _tiny_images()[:1, :, :64, :96].float() / 255
    (y0, s0), (y1, s1) = narrow.encoder.analysis(x), wide.encoder.analysis(x)
    assert torch.equal(s0, s1) and (y1 - y0).abs().max() < 1e-5
    y1.pow(2).sum().backward()
    assert wide.encoder.rest[4].weight.grad[:, 64:].abs().sum() > 0      # the new channels are read
    assert wide.encoder.rest[0].weight.grad[64:].abs().sum() > 0         # and learn
    w = wide.encoder.rest[2].weight
    opt = torch.optim.Adam([w])
    opt.state[w] = {"exp_avg": torch.ones(64, 64, 5, 5), "exp_avg_sq": torch.full((64, 64, 5, 5), 2.0),
                    "step": torch.tensor(3.0)}
    pad_moments(opt)
    assert opt.state[w]["exp_avg"].shape == w.shape and opt.state[w]["exp_avg"].sum() == 64 * 64 * 25
    assert opt.state[w]["exp_avg_sq"][:64, :64].eq(2).all() and opt.state[w]["exp_avg_sq"][64:].eq(2 * LAP_WARMUP).all()


def test_optimizer_state_follows_its_parameters_into_new_groups():
    """An Adam state saved with two groups (parameters, gains) resumes in three (parameters, the
    encoder branch at its own lr, gains): each parameter gets its own moments back, by name."""
    from training.train import regroup, saved_order
    a, b, g = (torch.nn.Parameter(torch.zeros(k)) for k in (2, 3, 4))
    model_order = ["a", "encoder.rest.0.weight", "log_gain"]
    old = torch.optim.Adam([{"params": [a, b], "lr_scale": 1.0}, {"params": [g], "lr_scale": 10.0}])
    for p in (a, b, g):
        old.state[p] = {"step": torch.tensor(7.0), "exp_avg": torch.full_like(p, p.numel()), "exp_avg_sq": torch.ones_like(p)}
    saved = {"opt": old.state_dict(), "step": 7}
    new = torch.optim.Adam([{"params": [a], "lr_scale": 1.0}, {"params": [b], "lr_scale": 10.0},
                            {"params": [g], "lr_scale": 10.0}])
    new.load_state_dict(regroup(saved["opt"], saved_order(saved, model_order, ("log_gain", "log_inv_gain")), new,
                                model_order))
    assert [new.state[p]["exp_avg"][0].item() for p in (a, b, g)] == [2, 3, 4]
    assert [grp["lr_scale"] for grp in new.param_groups] == [1.0, 10.0, 10.0]
    with pytest.raises(KeyError):
        regroup(saved["opt"], ["a", "b"], new, ["a", "c"])


def test_architecture_is_read_back_from_the_weights():
    from remac.models.codec import architecture
    for kwargs in ({"arch": "klt", "decoder_width": (96, 96, 64, 48)}, {"arch": "gdn", "decoder_wide": (0, 0, 1, 0)},
                   {"arch": "klt", "lap": 4}, {"arch": "klt", "encoder_width": 80}):
        model = REMAC(1, **kwargs)
        again = REMAC(1, **architecture(model.state_dict()))
        assert again.load_state_dict(model.state_dict()) is not None
        assert again.arch == model.arch and again.m == model.m


def test_extra_quality_level_keeps_every_old_gain_and_extrapolates_the_top():
    """A checkpoint with 8 levels read into the 9-level klt model: quality q of the old mapping
    (t = 7 q / 100) is quality 7 q / 8 of the new one, with the same gains, and the new top level
    is where the old gains extrapolate to (t = 8); the new row's Adam moments start at zero."""
    from remac.models.codec import KLT_LAMBDAS, architecture
    from training.surgery import extend_levels
    from training.train import pad_moments
    old = REMAC(1, arch="klt", m=32, lambdas=KLT_LAMBDAS[:8]).eval()
    with torch.no_grad():
        old.log_gain.add_(torch.randn_like(old.log_gain) * 0.1)
    new = REMAC(1, arch="klt", m=32).eval()
    assert len(new.lambdas) == 9
    new.load_state_dict(extend_levels(old.state_dict(), 9))
    assert architecture(new.state_dict())["lambdas"] == KLT_LAMBDAS
    q_old = torch.tensor([0.0, 30.0, 100.0, 800 / 7])      # the last one extrapolated by the old model
    for got, want in zip(new.gains_for_quality(q_old * 7 / 8), old.gains_for_quality(q_old)):
        assert torch.allclose(got, want, rtol=1e-5)
    assert torch.equal(extend_levels(new.state_dict(), 9)["log_gain"], new.log_gain)
    with pytest.raises(ValueError, match="more than"):
        extend_levels(new.state_dict(), 8)
    param = torch.nn.Parameter(torch.zeros(9, 4))
    opt = torch.optim.Adam([param])
    opt.state[param] = {"step": torch.tensor(3.0), "exp_avg": torch.ones(8, 4), "exp_avg_sq": torch.ones(8, 4)}
    pad_moments(opt)
    assert opt.state[param]["exp_avg"].shape == (9, 4) and opt.state[param]["exp_avg"][8].abs().sum() == 0
    assert opt.state[param]["exp_avg_sq"][:8].eq(1).all()


def test_scale_index_stuck_below_zero_still_learns_to_grow():
    """The entropy-parameter clip passes gradients that point back into range (a plain clip left
    the first grey model's channels 85 and 95 predicting the smallest scale for non-zero latents)."""
    from remac.models.hyper import HyperSynthesis
    hyper = HyperSynthesis(m=4, nz=2)
    with torch.no_grad():
        hyper.out.bias[4:] = -200.0         # every scale index far below 0: clipped to 0
    z, r = torch.zeros(1, 2, 2, 2), torch.zeros(1, 9)
    _, idx = hyper(z, r)
    assert (idx == 0).all()
    (-idx.sum()).backward()                 # "grow the scale"
    assert (hyper.out.bias.grad[4:] < 0).all()      # a descent step raises the biases
    assert (hyper.out.bias.grad[:4] == 0).all()     # means are untouched by a scale objective


def test_rate_of_an_improbable_latent_still_has_a_gradient():
    """Below the 1e-9 likelihood floor the gradient still says "widen the distribution"."""
    from remac.models.hyper import gaussian_likelihood
    sigma = torch.tensor([0.11], requires_grad=True)
    bits = -torch.log2(gaussian_likelihood(torch.tensor([1.2]), torch.tensor([0.0]), sigma))
    bits.sum().backward()
    assert bits.item() == pytest.approx(-torch.log2(torch.tensor(1e-9)).item())
    assert sigma.grad.item() < 0
    # and the likelihood itself is accurate in the tail (a +-1 latent at the smallest scale)
    p = gaussian_likelihood(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.11, 0.11]))
    exact = 0.5 * (math.erfc(0.5 / (0.11 * math.sqrt(2))) - math.erfc(1.5 / (0.11 * math.sqrt(2))))
    assert p[0].item() == pytest.approx(exact, rel=1e-4) and p[1].item() == pytest.approx(exact, rel=1e-4)


def test_scale_floor_calibration_raises_only_channels_that_pay_for_it():
    """best_floors on a known histogram: a channel whose symbols are +-1 at the smallest scale gets
    a wider floor and fewer bits; a channel of zeros keeps floor 0 (its bits cannot grow)."""
    import numpy as np
    from training.calibrate import S_RANGE, best_floors, cost_matrix
    cost = cost_matrix()
    hist = np.zeros((2, cost.shape[0], 2 * S_RANGE + 1))
    hist[0, 0, S_RANGE - 1] = hist[0, 0, S_RANGE + 1] = hist[0, 0, S_RANGE] = 100   # -1, +1, 0 at t=0
    hist[1, 0, S_RANGE] = 300                                                     # zeros at t=0
    lo, before, after = best_floors(hist, cost, np.zeros(2, dtype=int))
    assert lo[0] > 10 and lo[1] == 0 and after < before / 5
    lo_kept, _, _ = best_floors(hist, cost, np.array([0, 5]))        # floors never drop
    assert lo_kept[1] == 5


def test_fitted_tables_code_their_own_statistics_cheaper_and_keep_the_gaussian_where_empty():
    """fit_tables on a known histogram: Laplacian symbols at one scale index get a table that codes
    them in fewer bits than the Gaussian one; an index with no symbols keeps the Gaussian table;
    every table still sums to 2^16 with no zero count (any symbol stays codable)."""
    import numpy as np
    from remac.bitstream import spec
    from training.calibrate import S_RANGE, fit_tables, floored, table_bits
    from training.export import y_tables
    gauss, _, sizes = y_tables()
    hist = np.zeros((2, len(sizes), 2 * S_RANGE + 1))
    s = np.arange(-S_RANGE, S_RANGE + 1)
    hist[0, 30] = np.round(1e5 * np.exp(-np.abs(s) / 2.0))          # Laplacian at index 30
    hist[1, 5, S_RANGE + 40] = 7                                     # escapes of a floored row
    counts = fit_tables(floored(hist, np.array([0, 12])))
    assert table_bits(hist[:1], counts) < 0.97 * table_bits(hist[:1])
    assert np.array_equal(counts[40], gauss[40])                     # no data: Gaussian kept
    assert (counts.sum(1) == 2 ** spec.PROB_BITS).all()
    assert all((counts[t, :sizes[t] + 1] >= 1).all() for t in range(len(sizes)))
    assert counts[12, sizes[12]] > gauss[12, sizes[12]]              # floored row's escapes counted at 12


def test_training_references_follow_the_rover_descriptor():
    """ref_selection "descriptor": an image's reference is among its nearest images by the same
    recycled-latent descriptor the rover selects with, not a random member of its group."""
    import numpy as np
    from training.data import PairSampler, nearest_others, rover_descriptors
    images = (torch.arange(6).repeat_interleave(256 * 256).reshape(6, 1, 256, 256) * 40).to(torch.uint8)
    d = rover_descriptors(REMAC(1).encoder.eval(), images)
    assert d.shape == (6, 256)
    near = nearest_others(np.array([[0.0], [1.0], [10.0], [11.0], [30.0], [31.5]]), k=1)
    assert near[:, 0].tolist() == [1, 0, 3, 2, 5, 4]
    sampler = PairSampler(images, [0] * 6, 64, descriptors=np.array([[0.0], [1.0], [10.0], [11.0], [30.0], [31.5]]), k=1)
    assert [sampler.reference_of(i) for i in range(6)] == [1, 0, 3, 2, 5, 4]


def test_decoder_overlay_merges_only_onto_the_latents_it_was_trained_on():
    """Asymmetric schedule, stage 2 -> shipping: a decoder-only overlay is laid over the joint
    checkpoint when its latent digest matches (scale floors may differ), and refused otherwise."""
    from training.export import is_overlay, with_overlay
    from remac.models.codec import latent_digest
    state = {k: v.contiguous() for k, v in REMAC(1).state_dict().items()}
    heavy = REMAC(1, decoder_wide=(0, 0, 1, 1))
    overlay = {k: v.contiguous() for k, v in heavy.state_dict().items() if k.startswith("decoder.")}
    calibrated = dict(state, **{"hyper.out.lo": state["hyper.out.lo"] + 1})      # floors moved since
    assert is_overlay(overlay) and not is_overlay(calibrated)
    merged = with_overlay(calibrated, overlay, {"latent_digest": latent_digest(state)})
    assert torch.equal(merged["decoder.w2.0.c1.weight"], overlay["decoder.w2.0.c1.weight"])
    assert torch.equal(merged["hyper.out.lo"], calibrated["hyper.out.lo"])
    assert not any(k.startswith("decoder.") and k not in overlay for k in merged)
    with pytest.raises(SystemExit, match="other latents"):
        with_overlay(calibrated, overlay, {"latent_digest": "0" * 64})
    with pytest.raises(SystemExit, match="more than a decoder"):
        with_overlay(calibrated, overlay | {"log_gain": state["log_gain"]}, {"latent_digest": latent_digest(state)})


def test_checkpoint_comparison_curve_has_one_finite_point_per_quality():
    """training.compare (how training candidates are ranked) on a small untrained model: one
    (bpp, PSNR) per quality, all finite and positive."""
    from training.compare import QUALITIES, curve
    torch.manual_seed(0)
    points = curve(REMAC(1).eval(), torch.rand(2, 1, 64, 64))
    assert len(points) == len(QUALITIES)
    assert all(math.isfinite(b) and math.isfinite(p) and b > 0 and p > 0 for b, p in points)


def test_ceiling_diagnostic_separates_quantizer_from_transform():
    """training.compare.ceiling: a fresh klt codec is lossless before rounding, so any loss it
    shows is the quantizer's; rounding costs less at higher quality."""
    from training.compare import ceiling
    from training.data import klt_basis
    model = REMAC(1, arch="klt").eval()
    model.init_basis(klt_basis(_tiny_images(), patches=20_000))
    x = _tiny_images()[:2, :, :64, :64].float() / 255
    rows = ceiling(model, x)
    assert all(unq > 60 for _, _, unq in rows)
    assert rows[0][1] < rows[-1][1] < rows[-1][2]


def test_colour_rendering_changes_colour_not_structure():
    """render_colour (the sampler's "colour" augmentation and load_set's extra Mastcam luma
    renders) shows a crop through other pipelines (white balance, saturation, hue, resampling):
    values stay in [0,1], colours move, the structure survives, and a seed gives the same renders."""
    import random
    from training.data import render_colour
    from PIL import Image
    from pathlib import Path
    import numpy as np
    rgb = np.asarray(Image.open(Path(__file__).parent / "data" / "mastcam_rgb.png").convert("RGB"))[:64, :64]
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float() / 255
    rng, again = random.Random(1), random.Random(1)
    for _ in range(8):
        out = render_colour(x, rng)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        assert (out.mean((1, 2)) - x.mean((1, 2))).abs().max() > 1e-3                 # colour moved
        a, b = out.mean(0).flatten(), x.mean(0).flatten()
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.8                        # structure kept
        assert torch.equal(out, render_colour(x, again))


def test_some_training_steps_take_larger_crops_with_the_same_pixels():
    """large_crop / large_every: every k-th step trains on crops of the larger side, batch scaled so
    the pixels per step stay the same; the sampler cuts them (at most the stored 256 px)."""
    import torch
    from training.data import PairSampler
    from training.train import batch_shape
    cfg = {"batch": 8, "crop": 128, "large_crop": 256, "large_every": 4}
    assert [batch_shape(cfg, s) for s in range(5)] == [(2, 256), (8, 128), (8, 128), (8, 128), (2, 256)]
    assert batch_shape({"batch": 8, "crop": 128}, 4) == (8, 128)
    images = torch.randint(0, 255, (3, 1, 256, 256), dtype=torch.uint8)
    sampler = PairSampler(images, [0, 0, 0], 128, augment=False, ref_crop=64)
    x, ref = sampler.batch(*batch_shape(cfg, 0))
    assert x.shape == (2, 1, 256, 256) and ref.shape == (2, 1, 64, 64)
    assert sampler.batch(1, crop=512)[0].shape == (1, 1, 256, 256)


def test_whole_frame_check_reads_frames_at_their_own_size(tmp_path):
    """load_frames: the top-left side x side of each frame at native size (edge-padded when smaller)."""
    import numpy as np
    from PIL import Image
    from training.data import load_frames
    (tmp_path / "f").mkdir()
    a = (np.arange(600 * 300) % 251).astype(np.uint8).reshape(300, 600)
    Image.fromarray(a).save(tmp_path / "f" / "a.png")
    frames = load_frames(tmp_path, "f", 1, side=512)
    assert frames.shape == (1, 1, 512, 512)
    assert np.allclose(frames[0, 0, :300, :512].numpy(), a[:, :512] / 255)
    assert np.allclose(frames[0, 0, 300:, :].numpy(), frames[0, 0, 299:300, :].numpy())


def test_folder_weights_draw_a_folder_more_often(tmp_path):
    """config "folder_weights": folder_weights gives each image its folder's weight, in load_set's
    order (images under 128 px skipped there too), and PairSampler draws images in that proportion."""
    import numpy as np
    from training.data import PairSampler, folder_weights
    rows = ["path,width,height", "a/1.png,256,256", "b/1.png,256,256", "b/small.png,64,64", "a/2.png,256,256"]
    (tmp_path / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    weights = folder_weights(tmp_path, ["a", "b"], {"b/": 3})
    assert weights == [1.0, 3.0, 1.0]
    images = torch.arange(3, dtype=torch.uint8).repeat_interleave(256 * 256).reshape(3, 1, 256, 256)
    sampler = PairSampler(images, [0, 1, 2], 16, augment=False, weights=weights)
    drawn = np.array([round(float(x[0, 0, 0, 0]) * 255) for x in (sampler.batch(1)[0] for _ in range(2000))])
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert abs(share[1] - 0.6) < 0.05 and abs(share[0] - 0.2) < 0.05


def test_load_set_adds_luma_renders_of_colour_images_after_the_originals(tmp_path):
    """load_set(renders={folder: n}) appends n luma copies of each colour image of `folder`, each
    through another pipeline (render_colour), in the original's group; folder_weights lines up."""
    import numpy as np
    from PIL import Image
    from training.data import folder_weights, load_set
    src = np.asarray(Image.open(Path(__file__).parent / "data" / "mastcam_rgb.png").convert("RGB"))[:256, :256]
    for folder, name, a in (("train/gray", "g.png", src[..., 1]), ("train/color", "c.png", src)):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(a).save(tmp_path / folder / name)
    (tmp_path / "MANIFEST.csv").write_text("path,source_path,sol,width,height\n"
                                            "train/gray/g.png,g,1,256,256\ntrain/color/c.png,c,2,256,256\n")
    folders = ["train/gray", "train/color"]
    images, groups = load_set(tmp_path, folders, 1, renders={"train/color": 2})
    assert images.shape == (4, 1, 256, 256) and images.dtype == torch.uint8
    assert groups[2] == groups[3] == groups[1] != groups[0]
    plain = images[1, 0].float().flatten()
    for k in (2, 3):
        render = images[k, 0].float().flatten()
        assert not torch.equal(render, plain)
        assert torch.corrcoef(torch.stack([render, plain]))[0, 1] > 0.8
    assert folder_weights(tmp_path, folders, {"train/color": 1.5}, {"train/color": 2}) == [1.0, 1.5, 1.5, 1.5]
    assert len(load_set(tmp_path, folders, 1)[0]) == 2
