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
