"""Ground synthesis: tiles that cover the decoder's receptive field, the same pixels for any thread
count and tiling, previews (--reduce) close to the downsampled full decode."""
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")

from remac.ground_decoder.cli import decode_main  # noqa: E402
from remac.ground_decoder.decode import box_reduce, decode, render, synthesis_input  # noqa: E402
from remac.models import ground  # noqa: E402
from remac.rover_encoder.encode import encode  # noqa: E402
from remac.rover_encoder.imageio import load_image  # noqa: E402
from tests.conftest import COLOUR, GREY, psnr  # noqa: E402
from remac.rover_encoder.options import EncodeOptions


@pytest.fixture(scope="module")
def streams(default_library):
    return {p: encode(load_image(p), EncodeOptions(7500, library=default_library)).data for p in (GREY, COLOUR)}


@pytest.mark.parametrize("name", ["grey"])
def test_stages_chain_to_the_decoder(name):
    """decoder_stages is RefDecoder.synthesize cut at its pixel shuffles, nothing more or less
    (plus, for a decoder with a linear block path, GroundModel.linear_path), up to float rounding."""
    gm = ground.load(name)
    d = gm.decoder
    torch.manual_seed(0)
    y, ref = torch.randn(1, d.head.in_channels, 5, 7), torch.rand(1, gm.channels, 64, 64)
    with ground.torch_threads(1), torch.inference_mode():
        feats = d.reference_features(ref)
        x = y
        for stage in ground.decoder_stages(d, feats):
            x = stage.fn(x)
        if d.synth_lin is not None:
            x = x + gm.linear_path(y)
        # float rounding at most: on AMD EPYC oneDNN rounds the cropped transposed convolution and the
        # staged chain differently from the one-call synthesis (1e-6 of a [0, 1] image); a stage
        # left out or run twice is off by far more
        assert (x - d.synthesize(y, feats)).abs().max() < 1e-5


def test_tiles_cover_the_receptive_field(monkeypatch):
    """A latent perturbation reaches exactly as far as the computed context (33 latent px for the
    shipped decoder), and small tiles reproduce the whole-frame pass (float rounding at most)."""
    gm = ground.load("grey")
    monkeypatch.setattr(gm, "precision", "fp32")    # the geometry, not bf16 (decode_precision on AMX CPUs)
    d = gm.decoder
    need = ground.margins(ground.decoder_stages(d, (None, None, None)))
    torch.manual_seed(1)
    y, ref = 3 * torch.randn(1, d.head.in_channels, 72, 5), torch.rand(1, 1, 64, 64)
    y2 = y.clone()
    y2[:, :, 36, 2] += 4.0
    with ground.torch_threads(1), torch.inference_mode():
        feats = d.reference_features(ref)
        scaled = lambda t: t * gm.inv_gain[50][None, :, None, None]
        whole, whole2 = (d.synthesize(scaled(t), feats).clamp(0, 1) for t in (y, y2))
    rows = torch.nonzero((whole2 - whole).abs().amax(dim=(0, 1, 3)) > 0)[:, 0]
    reach = max(36 * 16 - rows.min().item(), rows.max().item() + 1 - 37 * 16) / 16
    assert need[0] - 1 < reach <= need[0]
    tiled = gm.synthesize(y, 50, ref, threads=2, tile=7, trunk_tile=11)
    assert (tiled - whole).abs().max().item() <= 1e-5


@pytest.mark.parametrize("lap", [0, 8])
def test_tiles_of_any_decoder_layout_match_its_whole_frame_pass(lap):
    """The generic path on a small random decoder with other widths, extra and wide blocks and, if
    this RefDecoder has one, the linear synthesis path (synth_lin) added per latent pixel, block by
    block or lapped (lap 8: each latent pixel's basis images reach into the neighbouring blocks)."""
    import inspect
    from remac.models.ref_decoder import RefDecoder
    torch.manual_seed(2)
    kw = {"skip": True, "lap": lap} if "skip" in inspect.signature(RefDecoder).parameters else {}
    d = RefDecoder(3, 16, width=(24, 16, 8, 8), extra=(1, 0, 2, 1), wide=(0, 1, 0, 1), **kw).eval()
    with torch.no_grad():
        for p in d.parameters():                      # no identity or zero initialisation left
            p.add_(0.05 * torch.randn_like(p))
    gm = ground.GroundModel.__new__(ground.GroundModel)
    gm.decoder, gm.channels, gm.inv_gain = d, 3, torch.ones(1, 16)
    y, ref = 2 * torch.randn(1, 16, 24, 19), torch.rand(1, 3, 48, 48)
    with ground.torch_threads(1), torch.no_grad():
        whole = d(y, ref).clamp(0, 1)
    assert (gm.synthesize(y, 0, ref, threads=2, tile=10, trunk_tile=16) - whole).abs().max().item() <= 1e-5


@pytest.mark.parametrize("path", [GREY, COLOUR])
def test_decoded_pixels_do_not_depend_on_threads(path, streams, default_library, monkeypatch):
    """Same stream -> byte-identical pixels for 1, 2 and 3 workers and across runs, on the shipped
    tile grid and on a much finer one. Another grid changes crop shapes, hence float rounding:
    within 1 LSB of the shipped one (that is why the grid is fixed, not a decode option)."""
    header, gm, y_map, x_ref, _, _ = synthesis_input(streams[path], default_library)   # colour: its luma plane
    pixels = lambda threads: render(gm, y_map, header, x_ref, threads)
    shipped = pixels(1)
    if path == GREY:
        assert np.array_equal(decode(streams[path], default_library, threads=1).image[:, :, None], shipped)
    monkeypatch.setattr(ground, "TILE", 8)               # 2 x 2 tiles in each pass
    monkeypatch.setattr(ground, "TRUNK_TILE", 8)
    fine = pixels(1)
    for threads in (2, 3):
        assert np.array_equal(pixels(threads), fine), threads
    monkeypatch.undo()
    assert np.array_equal(pixels(2), shipped)            # one tile per pass: torch used to thread it
    diff = np.abs(fine.astype(int) - shipped)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_cli_threads_give_identical_files(streams, tmp_path):
    (tmp_path / "g.rmc").write_bytes(streams[GREY])
    for threads in ("1", "2", "4"):
        r = CliRunner().invoke(decode_main, [str(tmp_path / "g.rmc"), "-o", str(tmp_path / f"{threads}.png"),
                                             "--threads", threads, "--quiet"])
        assert r.exit_code == 0, r.output
    assert (tmp_path / "1.png").read_bytes() == (tmp_path / "2.png").read_bytes() == (tmp_path / "4.png").read_bytes()
    r = CliRunner().invoke(decode_main, [str(tmp_path / "g.rmc"), "-o", str(tmp_path / "p.png"), "--reduce", "2"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "p.png").size == (64, 64)


@pytest.mark.parametrize("path", [GREY, COLOUR])
def test_previews_match_the_downsampled_full_decode(path, streams, default_library):
    """--reduce 1..3: the fitted preview head within ~35-41 dB of the box-downsampled full decode
    (measured on these images: 36.9 / 41.5 / 44.0 dB grey, 40.5 / 44.5 / 47.0 dB colour)."""
    full = decode(streams[path], default_library).image
    full = full.reshape(full.shape[0], full.shape[1], -1)
    for reduce, floor in ((1, 35.0), (2, 39.0), (3, 41.0)):
        out = decode(streams[path], default_library, reduce=reduce)
        assert not out.warnings
        assert out.image.shape[:2] == (256 >> reduce, 256 >> reduce)
        assert psnr(box_reduce(full, reduce).reshape(out.image.shape), out.image) >= floor


def test_preview_of_odd_sizes_and_without_a_head(default_library, monkeypatch):
    """Sizes round up; a decoder without a fitted head still previews (full decode, box-downsampled,
    with a warning)."""
    img = load_image(GREY)
    img.pixels = img.pixels[:, :77, :131]
    data = encode(img, EncodeOptions(7500, library=default_library)).data
    assert [decode(data, default_library, reduce=r).image.shape for r in (1, 2, 3)] == [(39, 66), (20, 33), (10, 17)]
    monkeypatch.setattr(ground.GroundModel, "preview_head", lambda self: None)
    out = decode(data, default_library, reduce=2)
    full = decode(data, default_library).image
    assert "no preview head" in out.warnings[0]
    assert np.array_equal(out.image, box_reduce(full[..., None], 2)[..., 0])


def test_preview_conceals_lost_tiles(default_library):
    img = load_image(GREY)
    img.pixels = img.pixels[:, :64, :128]               # two 64x64 tiles
    b = bytearray(encode(img, EncodeOptions(5000, library=default_library, tile=64)).data)
    b[-30] ^= 0xFF                                      # inside the last tile
    out = decode(bytes(b), default_library, reduce=1)
    assert out.lost_tiles == [1] and out.image.shape == (32, 64)
    assert len(np.unique(out.image[:, 32:])) == 1       # the lost half is one flat value


def test_progress_bar_only_when_asked_and_for_several_tiles(streams, default_library, monkeypatch, capsys):
    decode(streams[GREY], default_library, progress=True)              # one tile per pass: no bar
    assert "synthesis" not in capsys.readouterr().err
    monkeypatch.setattr(ground, "TILE", 8)
    decode(streams[GREY], default_library, progress=False)
    assert "synthesis" not in capsys.readouterr().err
    decode(streams[GREY], default_library, progress=True)
    assert "synthesis" in capsys.readouterr().err


def test_lapped_linear_path_tiles_and_previews_are_the_whole_map_box_averaged():
    """GroundModel.linear_path of a lapped synthesis (lap 8) per latent box, at every --reduce, is
    the whole map's synth_lin output box-averaged, cell for cell (a box reads one cell around it)."""
    import torch.nn.functional as F
    from remac.models.ref_decoder import RefDecoder
    torch.manual_seed(4)
    d = RefDecoder(1, 16, width=(24, 16, 8, 8), skip=True, lap=8).eval()
    with torch.no_grad():
        d.synth_lin.weight.normal_()
    gm = ground.GroundModel.__new__(ground.GroundModel)
    gm.decoder = d
    y = torch.randn(1, 16, 9, 7)
    with torch.no_grad():
        whole = d.synth_lin(y)
        for reduce in range(4):
            s = 16 >> reduce
            tiles = torch.cat([torch.cat([gm.linear_path(y, reduce, (r0, r1, c0, c1)) for c0, c1 in ((0, 3), (3, 7))], 3)
                               for r0, r1 in ((0, 4), (4, 9))], 2)
            assert tiles.shape[-2:] == (9 * s, 7 * s)
            assert (tiles - F.avg_pool2d(whole, 1 << reduce)).abs().max() < 1e-5


def test_colour_planes_synthesized_together_match_one_after_another(streams, default_library):
    """With --threads > 1 a colour stream's three planes share one pool of workers (and a tile's cells
    are shared among idle workers, models.ground.Workers): the same pixels as --threads 1, which
    synthesizes the planes in turn on the calling thread."""
    alone = decode(streams[COLOUR], default_library, threads=1).image
    for threads in (2, 3):
        assert np.array_equal(decode(streams[COLOUR], default_library, threads=threads).image, alone), threads


def test_workers_run_every_job_and_the_urgent_jobs_jobs_add_and_raise_a_jobs_error():
    done = []
    with ground.Workers(2) as workers:
        def box(k):
            done.append(("box", k))
            workers.map(lambda c: done.append(("cell", k, c)), range(3), urgent=True)
        workers.map(box, range(4))
    assert sorted(d for d in done if d[0] == "box") == [("box", k) for k in range(4)]
    assert len([d for d in done if d[0] == "cell"]) == 12
    with pytest.raises(ZeroDivisionError), ground.Workers(2) as workers:
        workers.map(lambda k: 1 // (k - 2), range(5))
