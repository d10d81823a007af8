"""What VSD's particle score costs: its trainable parameters and its network calls a step.

    python benchmarks/vsd_cost.py

Counts (no timing): the LoRA copy of the shipped toy UNet and of Stable Diffusion 2.1-base
(built on the meta device from ``RANDOM_ARCHITECTURES["sd2.1-base"]``, which has the
released checkpoint's sizes; needs the ``sd`` extra), with ``ParticleScoreConfig``'s
defaults; and the toy UNet's forward calls in a few VSD steps against SDS's. Stage times
per step: ``python benchmarks/step_time.py --prior toy estimator=vsd``.
"""

from __future__ import annotations

import dataclasses

import torch

from ssd3d.models.unet import load_toy_prior
from ssd3d.pipeline.config import resolve_config
from ssd3d.pipeline.run import prepare
from ssd3d.priors.variational import (
    CameraEmbedding,
    ParticleScoreConfig,
    StableDiffusionLoraScore,
    ToyLoraScore,
)


def count(params) -> int:
    return sum(p.numel() for p in params)


def toy_counts(prior) -> None:
    score = ToyLoraScore(prior.unet, prior.alphas_cumprod)
    camera = count(score.camera_embedding.parameters())
    total = score.num_parameters()
    print(
        f"toy UNet: {count(prior.unet.parameters()):,} frozen; LoRA rank "
        f"{score.config.rank} on {', '.join(score.TARGETS)}: {total - camera:,}; camera "
        f"embedding {camera:,}; trainable {total:,}"
    )


def sd_counts() -> None:
    try:
        import peft
        from diffusers import UNet2DConditionModel
    except ImportError:
        print("Stable Diffusion: needs the sd extra (diffusers, peft)")
        return
    from ssd3d.priors.stable_diffusion import RANDOM_ARCHITECTURES

    config = ParticleScoreConfig()
    with torch.device("meta"):
        unet = UNet2DConditionModel(
            in_channels=4,
            out_channels=4,
            cross_attention_dim=1024,
            **RANDOM_ARCHITECTURES["sd2.1-base"]["unet"],
        )
        frozen = count(unet.parameters())
        unet.requires_grad_(False)
        unet.add_adapter(
            peft.LoraConfig(
                r=config.rank,
                lora_alpha=config.alpha,
                target_modules=list(StableDiffusionLoraScore.TARGETS),
            )
        )
        lora = count(p for p in unet.parameters() if p.requires_grad)
        camera = count(CameraEmbedding(unet.time_embedding.linear_2.out_features).parameters())
    print(
        f"SD 2.1-base UNet: {frozen:,} frozen; LoRA rank {config.rank} on "
        f"{', '.join(StableDiffusionLoraScore.TARGETS)}: {lora:,}; camera embedding "
        f"{camera:,}; trainable {lora + camera:,}"
    )


def calls_per_step(prior, estimator: str, steps: int = 3) -> list[int]:
    """Batch sizes of the toy UNet's forward calls (prior and copy alike) over ``steps``."""
    cfg = resolve_config("toy", {"prompt": "a red cube"}, [])
    run = prepare(dataclasses.replace(cfg, estimator=estimator), prior)
    sizes: list[int] = []
    networks = [prior.unet] + ([run.particle.score.network] if run.particle else [])
    handles = [
        n.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
        for n in networks
    ]
    try:
        for _ in range(steps):
            run.run_step()
    finally:
        for h in handles:
            h.remove()
    return sizes


def main() -> None:
    prior = load_toy_prior()
    toy_counts(prior)
    sd_counts()
    for spec in ("sds guidance_scale=7.5", "vsd"):
        sizes = calls_per_step(prior, spec)
        print(f"{spec}: toy UNet forward batch sizes over 3 steps of 2 views: {sizes}")


if __name__ == "__main__":
    main()
