"""Write the shipped toy prior's model card from the weights file's own metadata.

    python scripts/model_card.py src/ssd3d/toyworld/assets/toy_prior.safetensors \
        --grid src/ssd3d/toyworld/assets/toy_prior_samples.png \
        > src/ssd3d/toyworld/assets/MODEL_CARD.md

Every number in the card is read from the file (written by ``ssd3d toyworld train-prior``).
"""

from __future__ import annotations

import argparse
import json

from safetensors import safe_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior")
    parser.add_argument("--grid", default=None, help="sample grid PNG to show (relative path)")
    parser.add_argument("--dataset", default="ssd3d toyworld render-dataset (defaults)")
    args = parser.parse_args()
    with safe_open(args.prior, framework="pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["train_config"])
    prompts = json.loads(meta["prompts"])
    losses = json.loads(meta.get("losses", "[]"))
    last_loss = losses[-1][1] if losses and isinstance(losses[-1], list) else losses[-1:]
    print("# ToyWorld prior (shipped)\n")
    print(
        "A small text-conditional pixel-space diffusion UNet (epsilon prediction, Stable "
        "Diffusion's scaled-linear betas) trained on ToyWorld renders; the `toy` prior.\n"
    )
    print("| field | value |\n|---|---|")
    rows = {
        "command": f"`{meta.get('created_by', 'ssd3d toyworld train-prior')} DATASET "
        f"--steps {meta['steps']}`",
        "data": f"{meta['dataset_size']} renders of {len(prompts)} prompts at "
        f"{meta['resolution']} px, dataset seed {meta['dataset_seed']} ({args.dataset})",
        "steps": meta["steps"],
        "batch size": cfg["batch_size"],
        "learning rate": cfg["lr"],
        "EMA decay": cfg["ema_decay"],
        "condition dropout": cfg["cond_dropout"],
        "seed": meta["seed"],
        "parameters": meta["parameters"],
        "training wall time": f"{float(meta['wall_time_s']) / 60:.1f} min on a 2-core CPU",
        "final training loss": last_loss,
    }
    for key, value in rows.items():
        print(f"| {key} | {value} |")
    if args.grid:
        print(f"\nGuided samples (DDIM), one row per prompt:\n\n![samples]({args.grid})")


if __name__ == "__main__":
    main()
