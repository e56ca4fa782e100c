"""Channel context (bitstream.latent): the integer slices equal the torch model's, and a tile coded
slice by slice decodes to the same symbols, scales and means."""
import numpy as np
import pytest

from remac.bitstream import entropy, intnet, latent, modelfile, spec
from remac.rover_encoder.imageio import load_image
from tests.conftest import GREY

torch = pytest.importorskip("torch")

SLICES = (0, 16, 64, 256)


@pytest.fixture(scope="module")
def context_model():
    """The shipped grey model with three context slices whose nets are random (no zero start): the
    integer export of the torch nets, attached to the shipped integer network."""
    from remac.models.intnet import round_half_up
    from remac.models.codec import REMAC, architecture, load_weights
    from remac.models.checkpoint import read_checkpoint
    from remac.models.codec import checkpoint_path
    state = read_checkpoint(checkpoint_path("grey"))
    model = REMAC(1, **{**architecture(state), "slices": SLICES})
    load_weights(model, state, strict=False)
    torch.manual_seed(0)
    with torch.no_grad():
        for net in model.hyper.ctx:
            net[1].weight.normal_(0, 0.05)
            net[1].bias.normal_(0, 0.3)
    model.eval()
    em = modelfile.load("grey")
    net = dict(em.net, slices=list(SLICES))
    for k, part in enumerate(model.hyper.ctx, start=1):
        net[f"ctx{k}"] = [{f: (v.astype(np.int64) if f != "kind" else v) for f, v in layer.export().items()}
                          for layer in part]
    intnet.prepare(net)
    x = torch.from_numpy(load_image(GREY).pixels[:, :128, :192].copy())[None]
    with torch.no_grad():
        y, _ = model.encoder.analysis(x)
        y_g, z, _, _ = model.gained_latents(y, torch.tensor([70.0]))
        z_hat = round_half_up(z).clamp(-spec.Z_CLIP, spec.Z_CLIP)
    return model, em, net, y_g, z_hat


def test_integer_slices_equal_the_torch_context(context_model):
    model, em, net, y_g, z_hat = context_model
    r = np.zeros(2 * em.m + 1, np.int64)
    with torch.no_grad():
        mu_t, idx_t = model.hyper.params(z_hat, torch.zeros(1, 2 * em.m + 1), y_g)
        base_mu, base_idx = model.hyper(z_hat, torch.zeros(1, 2 * em.m + 1))
    # the shipped model has spatial context: channel 0's means move in both; its scale-index shifts
    # are the coder's calibration (zero here, as the torch model has none)
    no_shifts = None if em.spatial is None else np.zeros_like(em.spatial[0])
    words, mu16, idx, symbols = latent.encode(net, z_hat[0].numpy().astype(np.int64), r, y_g[0].numpy(),
                                              em.z_tables, em.y_tables, spatial=no_shifts)
    assert np.array_equal(mu16, mu_t[0].numpy().astype(np.int64))
    assert np.array_equal(idx, idx_t[0].numpy().astype(np.int64))
    assert np.array_equal(mu16[1:16], base_mu[0, 1:16].numpy()) and not np.array_equal(idx[16:], base_idx[0, 16:].numpy())


def test_a_tile_coded_slice_by_slice_decodes_exactly(context_model):
    _, em, net, y_g, z_hat = context_model
    z = z_hat[0].numpy().astype(np.int64)
    r = np.zeros(2 * em.m + 1, np.int64)
    words, mu16, idx, symbols = latent.encode(net, z, r, y_g[0].numpy(), em.z_tables, em.y_tables)
    dec = entropy.TileDecoder(words, 0)
    assert np.array_equal(dec.z(z.shape, em.z_tables), z)
    mu_d, idx_d, s_d = latent.decode(dec, net, z, r, em.m, em.y_tables)
    assert np.array_equal(s_d, symbols) and np.array_equal(mu_d, mu16) and np.array_equal(idx_d, idx)


def test_slices_must_split_the_channels():
    assert modelfile._slices_ok([0, 16, 256], 256)
    assert not modelfile._slices_ok([0, 16, 200], 256) and not modelfile._slices_ok([0, 64, 16, 256], 256)
