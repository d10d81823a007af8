"""``ssd3d toyworld train-prior``, ``train-classifier`` and ``eval-prior``.

``register(app)`` adds a ``toyworld`` sub-app holding the two commands; ``add_commands``
attaches them to an existing ``toyworld`` Typer instead (so one sub-app can also carry
``render-dataset``).
"""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_PRIOR_OUT = Path("runs/toyworld/prior")
DEFAULT_JUDGE_OUT = Path("runs/toyworld/judge")
# Samples per prompt in the grid written after training (the model card's figure).
GRID_SAMPLES = 8


def add_commands(toyworld_app: typer.Typer) -> None:
    """Attach ``train-prior`` and ``train-classifier`` to a ``toyworld`` Typer."""

    @toyworld_app.command("train-prior")
    def train_prior_command(
        dataset: Path = typer.Argument(..., help="ToyWorld dataset (.safetensors)."),
        overrides: list[str] | None = typer.Argument(
            None, help="Config overrides key=value, e.g. lr=1e-4 unet.base_channels=32."
        ),
        out: Path = typer.Option(DEFAULT_PRIOR_OUT, "--out", help="Output folder."),
        steps: int | None = typer.Option(None, "--steps", help="Training steps in total."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint."),
        grid: bool = typer.Option(True, "--grid/--no-grid", help="Write a sample grid."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    ) -> None:
        """Train the toy diffusion prior; writes OUT/toy_prior.safetensors."""
        from ssd3d.config import apply_overrides
        from ssd3d.models.train_prior import TrainPriorConfig, train_prior
        from ssd3d.pipeline.run import check_device

        cfg = apply_overrides(TrainPriorConfig(), list(overrides or []))
        if steps is not None:
            cfg = apply_overrides(cfg, [f"steps={steps}"])
        check_device(device)
        result = train_prior(dataset, out, cfg, progress=True, resume=resume, device=device)
        typer.echo(
            f"prior: {result.prior_path} ({result.steps} steps, "
            f"{result.wall_time_s / 60:.1f} min, final loss {result.losses[-1][1]:.4f})"
        )
        if grid:
            import imageio.v3 as iio
            import torch

            from ssd3d.models.unet import load_toy_prior
            from ssd3d.priors.toy import sample_grid

            prior = load_toy_prior(result.prior_path, device)
            image = sample_grid(
                prior,
                prior.prompts,
                GRID_SAMPLES,
                generator=torch.Generator().manual_seed(cfg.seed),
                scale=2,
            )
            path = out / "samples.png"
            iio.imwrite(path, image)
            typer.echo(f"samples: {path} (one row per prompt)")
        typer.echo("ship it: copy the prior to src/ssd3d/models/assets/toy_prior.safetensors")

    @toyworld_app.command("train-classifier")
    def train_classifier_command(
        dataset: Path = typer.Argument(..., help="ToyWorld dataset (.safetensors)."),
        overrides: list[str] | None = typer.Argument(
            None, help="Config overrides key=value, e.g. width=48 shift_px=3."
        ),
        out: Path = typer.Option(DEFAULT_JUDGE_OUT, "--out", help="Output folder."),
        steps: int | None = typer.Option(None, "--steps", help="Training steps."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        init: Path | None = typer.Option(
            None, "--init", help="Start from this judge file (fine-tune) instead of at random."
        ),
    ) -> None:
        """Train the judge (prompt + view classifier); writes OUT/judge.safetensors."""
        from ssd3d.config import apply_overrides
        from ssd3d.models.judge import JudgeConfig, train_judge

        cfg = apply_overrides(JudgeConfig(), list(overrides or []))
        if steps is not None:
            cfg = apply_overrides(cfg, [f"steps={steps}"])
        from ssd3d.pipeline.run import check_device

        check_device(device)
        result = train_judge(dataset, out, cfg, progress=True, device=device, init=init)
        typer.echo(
            f"judge: {result.path} (held-out accuracy: prompt {result.val_prompt_accuracy:.3f}, "
            f"view {result.val_view_accuracy:.3f}; {result.wall_time_s / 60:.1f} min)"
        )
        typer.echo("ship it: copy the judge to src/ssd3d/models/assets/judge.safetensors")

    @toyworld_app.command("eval-prior")
    def eval_prior_command(
        prior: Path | None = typer.Option(None, "--prior", help="Prior file (default: shipped)."),
        judge: Path | None = typer.Option(None, "--judge", help="Judge file (default: shipped)."),
        samples: int = typer.Option(8, "--samples", help="Guided samples per prompt."),
        seed: int = typer.Option(0, "--seed"),
        out: Path | None = typer.Option(None, "--out", help="Write the scores here (.json)."),
        spacing: str = typer.Option(
            "leading", "--spacing", help="DDIM timestep spacing: leading or trailing."
        ),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    ) -> None:
        """Sample the prior for every prompt and report how many the judge recognises."""
        import dataclasses
        import json

        from ssd3d.errors import SSD3DError
        from ssd3d.models.judge import Judge
        from ssd3d.models.prior_eval import evaluate_prior, summarise
        from ssd3d.models.unet import load_toy_prior
        from ssd3d.pipeline.run import check_device

        if samples < 1:
            raise SSD3DError(f"--samples must be >= 1; got {samples}")
        if out is not None and out.suffix != ".json":
            raise SSD3DError(f"--out must name a .json file; got {out}")
        check_device(device)
        toy, reader = load_toy_prior(prior, device), Judge.load(judge, device)
        scores = evaluate_prior(toy, reader, samples_per_prompt=samples, seed=seed, spacing=spacing)
        for score in scores:
            if not score.recognised:
                typer.echo(
                    f"missed {score.prompt!r}: judge says {score.predicted or 'a tie'} "
                    f"(samples right {score.sample_accuracy:.2f}, shape "
                    f"{score.shape_accuracy:.2f}, colour {score.colour_accuracy:.2f})"
                )
        summary = summarise(scores)
        typer.echo(
            f"recognised {summary['recognised']:.0%} of {len(scores)} prompts; per sample: "
            f"prompt {summary['sample_accuracy']:.2f}, shape {summary['shape_accuracy']:.2f}, "
            f"colour {summary['colour_accuracy']:.2f} ({samples} samples per prompt, seed {seed})"
        )
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            record = {
                "summary": summary,
                "samples_per_prompt": samples,
                "seed": seed,
                "spacing": spacing,
                "prior": str(prior or "shipped"),
                "judge": str(judge or "shipped"),
                "prompts": [dataclasses.asdict(s) for s in scores],
            }
            out.write_text(json.dumps(record, indent=2) + "\n")
            typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add the ``toyworld`` sub-app with the two training commands."""
    toyworld = typer.Typer(
        name="toyworld", help="ToyWorld: train the toy prior and the judge.", no_args_is_help=True
    )
    add_commands(toyworld)
    app.add_typer(toyworld)
