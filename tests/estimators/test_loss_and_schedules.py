import pytest
import torch

from ssd3d.estimators import Annealed, DreamTime, Uniform, surrogate_loss


@pytest.mark.parametrize("shape", [(1, 2), (4, 3, 8, 8)])
def test_surrogate_loss_gradient_is_the_estimator_gradient(shape):
    x0 = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape, dtype=torch.float64)
    loss = surrogate_loss(x0, g)
    (grad,) = torch.autograd.grad(loss, x0)
    torch.testing.assert_close(grad, g / shape[0])  # batch mean: each sample's own loss gives g
    torch.testing.assert_close(loss, 0.5 * g.pow(2).sum() / shape[0])


def test_surrogate_loss_passes_gradient_through_a_graph():
    theta = torch.randn(3, requires_grad=True)
    x0 = (2 * theta).reshape(1, 3)
    g = torch.tensor([[1.0, -2.0, 0.5]])
    surrogate_loss(x0, g).backward()
    torch.testing.assert_close(theta.grad, 2 * g[0])


def test_uniform_schedule_range_and_determinism():
    s = Uniform(20, 980)
    t = s.sample(0, 10, 20000, torch.Generator().manual_seed(0))
    assert t.min() >= 20 and t.max() <= 980
    assert t.min() < 30 and t.max() > 970
    assert abs(t.double().mean().item() - 500) < 10
    t2 = s.sample(0, 10, 20000, torch.Generator().manual_seed(0))
    assert torch.equal(t, t2)


@pytest.mark.parametrize("kind", ["linear", "sqrt"])
def test_annealed_upper_bound_falls(kind):
    s = Annealed(20, 980, 500, kind=kind)
    assert s.upper(0, 101) == 980 and s.upper(100, 101) == 500
    mid = s.upper(25, 101)
    expected = 980 - 480 * (0.25 if kind == "linear" else 0.5)
    assert mid == round(expected)
    t = s.sample(100, 101, 5000, torch.Generator().manual_seed(1))
    assert t.max() <= 500 and t.min() >= 20


def test_dreamtime_is_monotone_and_prioritises_the_plateau():
    s = DreamTime()
    ts = [s.timestep(i, 100) for i in range(100)]
    assert all(a >= b for a, b in zip(ts, ts[1:], strict=False))
    assert ts[0] > 800 and ts[-1] < 500
    # the plateau [m2, m1] carries most steps
    plateau = sum(500 <= t <= 800 for t in ts)
    assert plateau > 40


def test_bad_schedule_range():
    with pytest.raises(ValueError, match="t_min"):
        Uniform(500, 100)
    with pytest.raises(ValueError, match="kind"):
        Annealed(kind="cubic")
