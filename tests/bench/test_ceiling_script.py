"""benchmarks/ceiling.py's measuring helpers: the gradient filter and the gradient trace."""

import importlib.util
import sys
from pathlib import Path

import torch

from ssd3d.scene.sdf_field import SDFGridConfig, SDFGridField

ROOT = Path(__file__).resolve().parents[2]


def _ceiling():
    if "ceiling" in sys.modules:
        return sys.modules["ceiling"]
    spec = importlib.util.spec_from_file_location("ceiling", ROOT / "benchmarks" / "ceiling.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ceiling"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smooth_grid_keeps_constants_and_mass_and_spreads_a_spike_binomially():
    c = _ceiling()
    assert torch.equal(c.smooth_grid(torch.full((5, 5, 5), 3.0), 2), torch.full((5, 5, 5), 3.0))
    spike = torch.zeros(9, 9, 9)
    spike[4, 4, 4] = 1.0
    once = c.smooth_grid(spike, 1)
    assert abs(once.sum().item() - 1.0) < 1e-6
    assert abs(once[4, 4, 4].item() - 0.5**3) < 1e-7  # [1, 2, 1] / 4 along each axis
    assert abs(once[3, 4, 4].item() - 0.25 * 0.5**2) < 1e-7
    assert abs(once[3, 3, 3].item() - 0.25**3) < 1e-7


def _step(field, grad, shift):
    before = field.sdf_grid.detach().clone()
    field.sdf_grid.grad = grad.clone()
    with torch.no_grad():
        field.sdf_grid += shift
    return before


def test_gradient_trace_reads_sign_consistency_and_step_size():
    c = _ceiling()
    field = SDFGridField(SDFGridConfig(resolution=8))
    ones = torch.ones_like(field.sdf_grid)
    trace = c.GradientTrace()
    for _ in range(4):  # the same sign every step, each node moved by exactly lr
        trace.add(field, _step(field, ones, 0.01))
    same = trace.summary(field, lr=0.01)
    assert abs(same["consistency"] - 1.0) < 1e-6
    assert abs(same["step_near"] - 1.0) < 1e-4 and abs(same["step_far"] - 1.0) < 1e-4
    trace.reset(None)
    for k in range(4):  # alternating sign: the window's sum cancels
        trace.add(field, _step(field, ones * (-1) ** k, 0.0))
    flipped = trace.summary(field, lr=0.01)
    assert flipped["consistency"] < 1e-6
    assert flipped["step_near"] == 0.0


def test_relative_eikonal_adds_its_gradient_at_the_given_share_of_the_data_gradient():
    c = _ceiling()
    row = c.Row("t", kind="multires", levels=(3, 5, 9), eikonal_relative=0.25)
    field = c.build_field(row)
    with torch.no_grad():
        field.sdf_levels[0].mul_(2.0)  # |grad| = 2: the eikonal term has a gradient
    weights = torch.randn(9, 9, 9, generator=torch.Generator().manual_seed(0))
    params = field.level_parameters()
    data = torch.autograd.grad((field.sdf_grid * weights).sum(), params)
    eik = torch.autograd.grad(field.eikonal_loss(), params)
    c._backward(field, row, (field.sdf_grid * weights).sum())
    added = [p.grad - d for p, d in zip(params, data, strict=True)]
    norm = lambda gs: torch.sqrt(sum(g.square().sum() for g in gs))  # noqa: E731
    assert abs(norm(added) / norm(data) - 0.25) < 1e-4
    cosine = sum((a * e).sum() for a, e in zip(added, eik, strict=True)) / norm(added) / norm(eik)
    assert cosine > 0.9999  # the eikonal term's own direction


def test_multires_optimiser_has_a_group_a_level_and_the_decay_waits_for_its_step():
    c = _ceiling()
    row = c.Row(
        "t",
        kind="multires",
        levels=(3, 5, 9),
        lr_density=0.01,
        level_lr=(1.0, 1.0, 0.25),
        level_decay=(0.0, 0.0, 10.0),
        lr_end=0.1,
        lr_decay_from=50,
        steps=101,
    )
    field = c.build_field(row)
    opt = c.optimizer(field, row)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == [0.01, 0.01, 0.0025, 0.01, row.lr_albedo]  # levels, beta, albedo
    assert [g["weight_decay"] for g in opt.param_groups][:3] == [0.0, 0.0, 10.0]
    for step, scale in ((0, 1.0), (50, 1.0), (75, 0.55), (100, 0.1)):
        opt = c._prepare_step(field, opt, row, step)
        assert abs(opt.param_groups[2]["lr"] - 0.0025 * scale) < 1e-9
        assert opt.param_groups[-1]["lr"] == row.lr_albedo  # albedo keeps its rate
