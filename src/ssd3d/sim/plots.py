"""Figures of the simulations: where each estimator sends the particles, and gradient noise.

Uses matplotlib's object API (``Figure`` + Agg canvas), never pyplot's global state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ssd3d.priors.gmm import GaussianMixturePrior
from ssd3d.sim.run import ScenarioResult

PANEL_INCHES = 3.4  # one estimator panel; 4 across fits a screen at dpi 110
COLUMNS = 4
HEADER_INCHES = 1.05  # two-line title above the panels
FOOTER_INCHES = 0.75  # tick labels and the legend below them
DPI = 110
GRID = 120  # density evaluation grid per axis (smooth at this panel size)
TRAJECTORY_COLOURS = ("#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


def projection(means: Tensor) -> Tensor:
    """An orthonormal [D, 2] basis to draw D-dimensional points in.

    D = 2: the identity. Otherwise the top two principal directions of the component means
    (where the mixture's structure is), completed by coordinate axes if the means span less.
    """
    d = means.shape[1]
    if d == 2:
        return torch.eye(2, dtype=torch.float64)
    centred = means - means.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=True)
    rank = int((s > 1e-9 * max(float(s.max()), 1e-300)).sum()) if s.numel() else 0
    basis = [vh[i] for i in range(min(rank, 2))]
    for axis in torch.eye(d, dtype=torch.float64):
        if len(basis) == 2:
            break
        v = axis - sum((axis @ b) * b for b in basis)
        if v.norm() > 1e-6:
            basis.append(v / v.norm())
    p = torch.stack(basis, dim=1)
    # A sign convention, so that the picture does not flip with tiny changes to the means.
    signs = torch.sign(p.sum(0))
    return p * torch.where(signs == 0, torch.ones_like(signs), signs)


def projected_log_density(result: ScenarioResult, y: int, plane: Tensor, grid: Tensor) -> Tensor:
    """log of class y's exact marginal density on the plane (None-class -1: all). [G, G]

    A Gaussian N(mu, diag(s^2)) projected by P [D, 2] is N(P^T mu, P^T diag(s^2) P).
    """
    prior = result.prior
    mask = prior.component_class == y if y >= 0 else torch.ones_like(prior.component_class).bool()
    row = prior.log_weights[y if y >= 0 else -1, mask]
    means = prior.means[mask] @ plane  # [K, 2]
    covs = plane.T[None] @ torch.diag_embed(prior.stds[mask].square()) @ plane[None]  # [K, 2, 2]
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    points = grid.reshape(-1, 1, 2)
    log_p = torch.logsumexp(row + dist.log_prob(points), dim=-1)
    return log_p.reshape(grid.shape[:2])


def off_plane_rms(prior: GaussianMixturePrior, y: str | int, plane: Tensor) -> float:
    """RMS distance of x ~ p(x | y) from the plane of P [D, 2], in closed form.

    E ||(I - P P^T) x||^2 = sum_k w_k (||(I - P P^T) mu_k||^2 + sum_d s_kd^2 (1 - (P P^T)_dd)).
    """
    means, stds, weights = prior.components(y)
    off = means - means @ plane @ plane.T
    keep = 1 - plane.square().sum(1)  # [D] share of each axis off the plane
    per_component = off.square().sum(1) + stds.square() @ keep
    return float((weights @ per_component).sqrt())


def _limits(result: ScenarioResult, plane: Tensor) -> tuple[float, float, float, float]:
    """A square-ish view holding every mean (+-3 sd), the start and 98% of every final set."""
    prior = result.prior
    pieces = [
        prior.means @ plane + 3 * (prior.stds.square() @ plane.square()).sqrt(),
        prior.means @ plane - 3 * (prior.stds.square() @ plane.square()).sqrt(),
        (result.initial @ plane).quantile(torch.tensor([0.01, 0.99], dtype=torch.float64), dim=0),
    ]
    for run in result.runs:
        pieces.append(
            (run.final @ plane).quantile(torch.tensor([0.01, 0.99], dtype=torch.float64), dim=0)
        )
    pts = torch.cat(pieces)
    lo, hi = pts.min(0).values, pts.max(0).values
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.05
    return (
        float(centre[0] - half),
        float(centre[0] + half),
        float(centre[1] - half),
        float(centre[1] + half),
    )


def scenario_figure(result: ScenarioResult, path: Path) -> Path:
    """One panel per estimator: the prompt class's density, final particles, trajectories."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    scenario, prior = result.scenario, result.prior
    plane = projection(prior.means)
    x0, x1, y0, y1 = _limits(result, plane)
    gx, gy = torch.meshgrid(
        torch.linspace(x0, x1, GRID, dtype=torch.float64),
        torch.linspace(y0, y1, GRID, dtype=torch.float64),
        indexing="xy",
    )
    grid = torch.stack([gx, gy], dim=-1)
    y = prior.class_index(scenario.prompt)
    target = projected_log_density(result, y, plane, grid)
    density = (target - target.max()).exp().numpy()  # peak 1
    others = [
        (projected_log_density(result, c, plane, grid).exp()).numpy()
        for c in range(len(prior.class_names))
        if c != y
    ]

    n = len(result.runs)
    cols = min(COLUMNS, n)
    rows = math.ceil(n / cols)
    height = rows * PANEL_INCHES + HEADER_INCHES + FOOTER_INCHES
    fig = Figure(figsize=(cols * PANEL_INCHES, height), dpi=DPI)
    FigureCanvasAgg(fig)
    # Shared axes: every panel shows the same window, and only the outer ones need labels.
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    levels = [0.02, 0.1, 0.25, 0.5, 0.75, 1.0]
    off_plane_data = off_plane_rms(prior, y, plane) if prior.dim > 2 else None
    for ax, run in zip(axes.flat, result.runs, strict=False):
        ax.contourf(gx.numpy(), gy.numpy(), density, levels=levels, cmap="Blues", alpha=0.8)
        for other in others:
            ax.contour(
                gx.numpy(),
                gy.numpy(),
                other / other.max(),
                levels=[0.1, 0.5],
                colors="#e08a2c",
                linewidths=0.8,
            )
        final = (run.final @ plane).numpy()
        ax.scatter(final[:, 0], final[:, 1], s=3, c="black", alpha=0.55, linewidths=0)
        paths = torch.einsum("skd,de->kse", run.trajectories, plane).numpy()  # [tracked, S, 2]
        colours = [TRAJECTORY_COLOURS[k % len(TRAJECTORY_COLOURS)] for k in range(len(paths))]
        for path_k, colour in zip(paths, colours, strict=True):
            ax.plot(path_k[:, 0], path_k[:, 1], color=colour, linewidth=0.9, alpha=0.9)
        if len(paths):
            ax.scatter(paths[:, 0, 0], paths[:, 0, 1], s=16, c="white", edgecolors=colours)
            ax.scatter(paths[:, -1, 0], paths[:, -1, 1], s=16, c=colours)
        m = run.metrics
        ax.set_title(run.label, fontsize=11, fontweight="bold")
        text = (
            f"log p {m.mean_log_prob:.1f}   support {100 * m.support_fraction:.0f}%\n"
            f"modes {m.modes_covered}/{m.num_modes}   dist {m.mean_nearest_mean_distance:.2f}"
        )
        if off_plane_data is not None:
            # What the projection hides: how far the particles sit off the drawn plane.
            residual = run.final - run.final @ plane @ plane.T
            rms = float(residual.square().sum(1).mean().sqrt())
            text += f"\noff-plane rms {rms:.2f} (data {off_plane_data:.2f})"
        ax.text(
            0.02,
            0.02,
            text,
            transform=ax.transAxes,
            fontsize=8,
            va="bottom",
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.7", "alpha": 0.85},
        )
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=8)
        ax.locator_params(nbins=5)  # fewer ticks: cleaner, and each tick costs draw time
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in list(axes.flat)[max(n - cols, 0) : n]:
        ax.xaxis.set_tick_params(labelbottom=True)

    dims = "2D" if prior.dim == 2 else f"{prior.dim}D, projected on the means' top-2 PCA plane"
    fig.suptitle(
        f"{scenario.name}: {scenario.description}\n"
        f"prompt '{scenario.prompt}' ({dims}); {result.initial.shape[0]} particles, "
        f"{run.trajectories.shape[0] - 1} steps, {scenario.optim.optimizer} lr {scenario.optim.lr}",
        fontsize=12,
        y=1 - 0.12 / height,
        va="top",
    )
    handles = [
        Patch(color="#6baed6", label=f"p(x | {scenario.prompt})"),
        Line2D([], [], color="#e08a2c", label="other class(es)"),
        Line2D([], [], marker="o", ls="", color="black", markersize=3, label="final particles"),
        Line2D([], [], color=TRAJECTORY_COLOURS[0], marker="o", mfc="white", label="trajectory"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=10, frameon=False)
    # A fixed layout: tight_layout measures every tick label and costs seconds.
    fig.subplots_adjust(
        left=0.04,
        right=0.99,
        top=1 - HEADER_INCHES / height,
        bottom=FOOTER_INCHES / height,
        wspace=0.06,
        hspace=0.14,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def variance_figure(results: Sequence[ScenarioResult], path: Path) -> Path:
    """Variance (top) and squared bias (bottom) of the mode-seeking term against t, per c."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(results)
    fig = Figure(figsize=(4.2 * n, 7.4), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n, squeeze=False, sharex=True)
    styles = {
        "per_sample": ("#1f77b4", "-", "per-sample c"),
        "running": ("#2ca02c", "-", "running c (earlier steps)"),
        "one": ("#d62728", "-", "c = 1 (SDS)"),
        "zero": ("#7f7f7f", "--", "c = 0"),
    }
    for col, result in enumerate(results):
        t = list(result.curve_timesteps)
        top, bottom = axes[0, col], axes[1, col]
        floor = None
        for key, values in result.curves.items():
            colour, ls, name = styles.get(key, ("black", ":", key))
            top.plot(t, [v.variance for v in values], color=colour, ls=ls, lw=1.8, label=name)
            # A bias estimate below its own noise level is drawn at that level.
            noise = [max(v.bias2_floor, 1e-12) for v in values]
            shown = [max(v.bias2, f) for v, f in zip(values, noise, strict=True)]
            bottom.plot(t, shown, color=colour, ls=ls, lw=1.8, label=name)
            floor = (
                noise if floor is None else [max(a, b) for a, b in zip(floor, noise, strict=True)]
            )
        if floor is not None:
            bottom.fill_between(t, 1e-12, floor, color="0.85", label="noise level of the estimate")
        top.set_title(f"{result.scenario.name} (D = {result.prior.dim})", fontsize=11)
        bottom.set_xlabel("timestep t", fontsize=10)
        for ax in (top, bottom):
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.tick_params(labelsize=8)
        bottom.set_ylim(bottom=max(min(floor or [1e-6]) / 3, 1e-12))
    axes[0, 0].set_ylabel("variance E ||g - E g||²", fontsize=10)
    axes[1, 0].set_ylabel("squared bias ||E g - E eps_cond||²", fontsize=10)
    axes[0, 0].legend(fontsize=8, loc="lower left")
    axes[1, 0].legend(fontsize=8, loc="upper right")
    fig.suptitle(
        "g = eps_cond - c·eps at fixed x0 ~ p(x | prompt), over noise draws (w(t) = 1)",
        fontsize=12,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
