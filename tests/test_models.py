"""PyTorch side: the training objective runs, the heavy decoder grows from the trained one."""
import pytest

torch = pytest.importorskip("torch")

from models.remac import REMAC  # noqa: E402
from models.train import lambda_for_quality, rd_loss  # noqa: E402


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
    from models.remac import LAMBDAS
    assert lambda_for_quality(torch.tensor([0.0]))[0] == pytest.approx(LAMBDAS[0])
    assert lambda_for_quality(torch.tensor([100.0]))[0] == pytest.approx(LAMBDAS[-1], rel=1e-5)


def test_heavy_decoder_starts_as_the_trained_one():
    """Stage 2 of the asymmetric schedule: extra blocks are identity-initialised."""
    base = REMAC(3).eval()
    heavy = REMAC(3, decoder_extra=(2, 2, 2, 2)).eval()
    missing, unexpected = heavy.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("decoder.x") for k in missing)
    y, ref = torch.randn(1, 128, 4, 4), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(base.decoder(y, ref), heavy.decoder(y, ref))
