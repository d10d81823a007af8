"""Tabulate benchmarks/prior_recipes.sh's eval-prior JSONs (markdown, for the model card):

python scripts/prior_recipes.py [results/prior_recipes]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# In table order; the last two were scored by the judge fine-tuned on the true-surface renders.
RECIPES = {
    "base": "the previous prior, on a GPU: lr 3e-4, no Min-SNR, no warm-up (1.8M parameters)",
    "minsnr": "+ Min-SNR weighting (gamma 5)",
    "wide": "base_channels 32 (3.2M parameters)",
    "big": "base_channels 32, Min-SNR 5, batch 128",
    "cpu-cosine": "Min-SNR 5, lr 3e-4 with cosine decay (200 warm-up steps), on the 2-core "
    "CPU (72 min)",
    "cpu-hour": "Min-SNR 5, lr 6e-4 after 200 warm-up steps, on the 2-core CPU (4000 steps: "
    "49 min), on the soft-step renders: the prior shipped before",
    "cpu-hour-judge-v3": "the prior shipped before, scored by the judge fine-tuned on the "
    "true-surface renders",
    "cpu-surface": "the same recipe on the true-surface renders (55 min): the shipped prior",
}


def table(root: Path) -> str:
    """The markdown table (and its caption) for the JSONs under ``root``."""
    cells: dict[str, dict[int, list[str]]] = {}
    for path in sorted(root.glob("*/eval_*.json")):
        record = json.loads(path.read_text())
        steps = int(path.stem.split("_")[1])
        recognised = f"{record['summary']['recognised']:.0%}"
        label = f"{recognised} ({record['spacing']}, seed {record['seed']})"
        cells.setdefault(path.parent.name, {}).setdefault(steps, []).append(label)
    all_steps = sorted({s for runs in cells.values() for s in runs})
    lines = ["| recipe | " + " | ".join(f"{s} steps" for s in all_steps) + " |"]
    lines.append("|---|" + "---|" * len(all_steps))
    for name in [n for n in RECIPES if n in cells] + sorted(set(cells) - set(RECIPES)):
        row = [", ".join(cells[name].get(s, ["-"])) for s in all_steps]
        lines.append(f"| {RECIPES.get(name, name)} | " + " | ".join(row) + " |")
    lines.append(
        "\nPrompts recognised by the judge (majority of 8 guided samples, DDIM 50 steps, "
        "guidance 2), per DDIM spacing and sampling seed; '-': not trained or not scored at that step. "
        "The last two rows were scored by the judge fine-tuned on the true-surface renders, "
        "the others by the judge of the soft-step renders."
    )
    return "\n".join(lines)


def main() -> None:
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "results/prior_recipes")))


if __name__ == "__main__":
    main()
