"""What the multi-face score measures: the judge's view labels on the true objects and on
fitted ones, under the benchmark's orbit, and the scores the benchmark derives from them.

    python benchmarks/judge_views.py objects                    # once: fitted scenes' renders
    python benchmarks/judge_views.py measure NAME [--judge PATH] [--dataset DATA]
    python benchmarks/judge_views.py table                      # markdown to stdout

``objects``: the oracle (the exact preset's scene fitted to the true renders, the
benchmark's oracle row) for the yellow wedge, red arrow and blue mug, rendered on the
benchmark's orbit (EvalConfig: 12 views at 15 degrees elevation, headlight lambertian) at
steps 0 (the initial blob), 50, 100 and 200, with the best-IoU yaw of each: stored in
results/judge_views/objects.safetensors so every judge reads the same images.

``measure``: one judge (default the shipped one) on

- the truth of every prompt whose shape has distinct views (wedge, arrow, mug), rendered
  by the benchmark's ``Scorer.truth`` at yaw 0 and turned by 180 degrees;
- the stored fitted objects;
- with ``--dataset``, the held-out renders of the judge's training split
  (``JudgeConfig`` seed and val_fraction), view accuracy per shape;

scored two ways: "before", the benchmark's earlier multi-face score (plain accuracy against
the labels of the unturned cameras), and "after", today's (balanced accuracy against the
labels the cameras see on the object turned by its best-IoU yaw). Writes
results/judge_views/NAME.json. ``table`` writes every measured judge side by side.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from ssd3d.bench.config import EvalConfig, bench_config
from ssd3d.bench.metrics import iou_over_yaw
from ssd3d.bench.oracle import TrueRenders
from ssd3d.bench.scoring import MULTI_FACE_SHAPES, Scorer
from ssd3d.models.judge import Judge, JudgeConfig, balanced_accuracy, held_out_accuracy
from ssd3d.pipeline.run import prepare
from ssd3d.scene import fixed_shading, view_labels
from ssd3d.toyworld.dataset_format import ToyDataset, read_safetensors, write_safetensors_atomic
from ssd3d.toyworld.shapes import SHAPES, VIEW_DISTINCT_SHAPES, sdf
from ssd3d.toyworld.vocabulary import all_prompts, parse_prompt

OUT = Path(__file__).resolve().parent.parent / "results" / "judge_views"
OBJECT_PROMPTS = ("a yellow wedge", "a red arrow", "a blue mug")
OBJECT_STEPS = (0, 50, 100, 200)
TRUTH_YAWS = (0.0, 180.0)


def orbit(cfg: EvalConfig):
    # The benchmark scores at the run's camera size: the presets' 32x32.
    return Scorer(cfg).cameras(32, 32, "cpu")


def label_index(judge_views: list[str], cameras, yaw_deg: float) -> torch.Tensor:
    return torch.tensor(
        [judge_views.index(v) for v in view_labels(cameras, object_yaw_deg=yaw_deg)]
    )


def scores(judge: Judge, images: torch.Tensor, cameras, yaw_deg: float) -> dict:
    """The judge's answers on ``images`` and both definitions of the score."""
    _, probs = judge.predict(images)
    pred = probs.argmax(-1)
    unturned = label_index(judge.view_names, cameras, 0.0)
    turned = label_index(judge.view_names, cameras, yaw_deg)
    return {
        "predicted": "".join(judge.view_names[int(i)][0] for i in pred),
        "labels": "".join(judge.view_names[int(i)][0] for i in turned),
        "before": float((pred == unturned).float().mean()),
        "after": balanced_accuracy(judge.view_confusion(images, turned)),
        "confusion": judge.view_confusion(images, turned).tolist(),
    }


def objects(args) -> None:
    cfg = EvalConfig()
    cameras = orbit(cfg)
    tensors, records = {}, []
    for prompt in OBJECT_PROMPTS:
        bc = bench_config(estimators="oracle", prompts=prompt, steps=max(OBJECT_STEPS))
        gen = bc.generate_config(bc.estimators[0], prompt, 0)
        run = prepare(gen, supervision=TrueRenders(prompt, gen.background.colour))
        while True:
            if run.step in OBJECT_STEPS:
                with torch.no_grad():
                    iou, yaw = iou_over_yaw(
                        run.scene.density,
                        parse_prompt(prompt).shape,
                        threshold=run.scene.surface_level,
                        resolution=cfg.iou_resolution,
                        n_yaw=cfg.n_yaw,
                    )
                    m = {"iou": iou, "yaw_deg": yaw}
                    rgb = run.scene.render(cameras, fixed_shading(cfg.shading, cameras)).rgb
                key = f"{prompt}|{run.step}"
                tensors[key] = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
                records.append({"key": key, "prompt": prompt, "step": run.step, **m})
                print(f"{prompt} step {run.step}: IoU {m['iou']:.2f} at yaw {m['yaw_deg']:.0f}")
            if run.step >= max(OBJECT_STEPS):
                break
            run.run_step()
    OUT.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(OUT / "objects.safetensors", tensors, {"records": json.dumps(records)})


def measure(args) -> None:
    judge = Judge.load(args.judge)
    cfg = EvalConfig()
    cameras = orbit(cfg)
    scorer = Scorer(cfg, judge)
    truth = []
    for prompt in all_prompts():
        if parse_prompt(prompt).shape not in MULTI_FACE_SHAPES:
            continue
        for yaw in TRUTH_YAWS:
            images = scorer.truth(prompt, yaw, cameras)
            truth.append({"prompt": prompt, "yaw_deg": yaw, **scores(judge, images, cameras, yaw)})
    fitted = []
    path = OUT / "objects.safetensors"
    if path.is_file():
        tensors, meta = read_safetensors(path, "judge_views objects")
        for rec in json.loads(meta["records"]):
            images = tensors[rec["key"]].float() / 255
            fitted.append({**rec, **scores(judge, images, cameras, rec["yaw_deg"])})
    held_out = {}
    if args.dataset:
        data = ToyDataset.load(args.dataset)
        train_cfg = JudgeConfig()
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(train_cfg.seed))
        val = data.subset(order[: int(round(train_cfg.val_fraction * len(data)))])
        shape_of = [parse_prompt(p).shape for p in data.prompts]
        for shape in SHAPES:
            mask = torch.tensor([s == shape for s in shape_of])
            held_out[shape] = held_out_accuracy(judge, val, mask)[1]
        distinct = torch.tensor([s in VIEW_DISTINCT_SHAPES for s in shape_of])
        held_out["all shapes"] = held_out_accuracy(judge, val)[1]
        held_out["distinct-view shapes"] = held_out_accuracy(judge, val, distinct)[1]
        held_out["prompt"] = held_out_accuracy(judge, val)[0]
    record = {
        "judge": str(args.judge or "shipped"),
        "train_config": json.loads(judge.metadata.get("train_config", "{}")),
        "init": judge.metadata.get("init"),
        "truth": truth,
        "fitted": fitted,
        "held_out": held_out,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    for row in truth:
        print(
            f"{row['prompt']:16s} yaw {row['yaw_deg']:3.0f}: {row['predicted']} (labels "
            f"{row['labels']}) before {row['before']:.2f} after {row['after']:.2f}"
        )
    for row in fitted:
        print(
            f"{row['prompt']:16s} step {row['step']:3d}: {row['predicted']} (labels "
            f"{row['labels']}) before {row['before']:.2f} after {row['after']:.2f}"
        )
    print(held_out)


def turned_iou(shape: str, yaw_deg: float = 180.0, resolution: int = 64) -> float:
    """3D IoU of the true ``shape`` with itself turned by ``yaw_deg``: how well the benchmark's
    best-IoU yaw can tell the two turns apart (1 = not at all)."""
    lin = torch.linspace(-0.7, 0.7, resolution)
    grid = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
    a = sdf(shape, grid) < 0
    b = sdf(shape, grid, math.radians(yaw_deg)) < 0
    return float((a & b).sum() / (a | b).sum())


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def table(args) -> None:
    names = sorted(p.stem for p in OUT.glob("*.json"))
    if not names:
        raise SystemExit(f"nothing measured in {OUT}: run `measure` first")
    runs = {n: json.loads((OUT / f"{n}.json").read_text()) for n in names}
    views = ["front", "side", "back", "overhead"]
    lines = []
    head = " | ".join(names)
    lines += [
        "The truth of every prompt whose shape has distinct views, on the benchmark's orbit "
        "(12 views, 15° elevation, headlight): mean / lowest multi-face score over the "
        f"{len([r for r in runs[names[0]]['truth'] if r['yaw_deg'] == 0])} prompts. Before: "
        "plain accuracy against the unturned cameras' labels; after: balanced accuracy "
        "against the labels of the object turned by its best-IoU yaw (the truth's is the "
        "turn it was rendered at).",
        "",
        f"| truth | score | {head} |",
        "|---|---|" + "---|" * len(names),
    ]
    for yaw in TRUTH_YAWS:
        for kind in ("before", "after"):
            cells = []
            for n in names:
                xs = [r[kind] for r in runs[n]["truth"] if r["yaw_deg"] == yaw]
                cells.append(f"{_mean(xs):.2f} / {min(xs):.2f}")
            lines.append(f"| turned {yaw:.0f}° | {kind} | " + " | ".join(cells) + " |")
    for n in names:
        conf = torch.zeros(4, 4, dtype=torch.long)
        for r in runs[n]["truth"]:
            if r["yaw_deg"] == 0:
                conf += torch.tensor(r["confusion"])
        lines += [
            "",
            f"Judge `{n}` on the truth at yaw 0, every view of every such prompt: row = the "
            "camera's label, column = the judge's.",
            "",
            "| true \\ judged | " + " | ".join(views) + " |",
            "|---|" + "---|" * 4,
        ]
        for i, v in enumerate(views):
            if int(conf[i].sum()):
                lines.append(f"| {v} | " + " | ".join(str(int(x)) for x in conf[i]) + " |")
    lines += [
        "",
        "3D IoU of each true shape with itself turned by 180° (64³ grid), what separates the "
        "two turns for the best-IoU yaw: "
        + ", ".join(f"{s} {turned_iou(s):.2f}" for s in VIEW_DISTINCT_SHAPES)
        + ".",
        "",
        "Per prompt (yaw 0), after: "
        + "; ".join(
            f"`{n}` "
            + ", ".join(
                f"{r['prompt'][2:]} {r['after']:.2f}"
                for r in runs[n]["truth"]
                if r["yaw_deg"] == 0 and r["after"] < 0.95
            )
            + (" (the rest >= 0.95)" if True else "")
            for n in names
        )
        + ".",
    ]
    fitted = {n: runs[n]["fitted"] for n in names if runs[n]["fitted"]}
    if fitted:
        first = next(iter(fitted.values()))
        lines += [
            "",
            "The oracle's scene (fitted to the true renders) on the way: what each judge answers "
            "on the 12 orbit views (f/s/b/o = front/side/back/overhead; the cameras' labels are "
            f"`{runs[names[0]]['truth'][0]['labels']}` at yaw 0) and the score before / after.",
            "",
            "| object | step | IoU | yaw | " + " | ".join(fitted) + " |",
            "|---|---|---|---|" + "---|" * len(fitted),
        ]
        for i, r in enumerate(first):
            cells = [
                f"`{f[i]['predicted']}` {f[i]['before']:.2f} / {f[i]['after']:.2f}"
                for f in fitted.values()
            ]
            lines.append(
                f"| {r['prompt'][2:]} | {r['step']} | {r['iou']:.2f} | {r['yaw_deg']:.0f}° | "
                + " | ".join(cells)
                + " |"
            )
    held = {n: runs[n]["held_out"] for n in names if runs[n]["held_out"]}
    if held:
        keys = list(next(iter(held.values())))
        lines += [
            "",
            "Held-out renders of the judge's training data (its 10% split, random cameras and "
            "shading): view accuracy per shape, and prompt accuracy.",
            "",
            "| | " + " | ".join(keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for n, h in held.items():
            lines.append(f"| `{n}` | " + " | ".join(f"{h[k]:.2f}" for k in keys) + " |")
    text = "\n".join(lines) + "\n"
    (OUT / "judge_views.md").write_text(text)
    print(text, end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("objects")
    m = sub.add_parser("measure")
    m.add_argument("name", help="the judge's name in the table (results/judge_views/NAME.json)")
    m.add_argument("--judge", default=None, help="judge file (default: the shipped one)")
    m.add_argument("--dataset", default=None, help="the judge's training data, for held-out")
    sub.add_parser("table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"objects": objects, "measure": measure, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
