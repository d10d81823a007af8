#!/usr/bin/env bash
# The toy preset's opacity sparsity weight, one prompt per shape (SSD, 600 steps, seed 0):
#   bash benchmarks/sparsity_sweep.sh [OUT] [WEIGHT ...]       (default: 200 450 600)
# then prints mean IoU and R-precision per weight over those prompts, with 300 read from
# results/bench/gpu-prior/vocabulary-24 (GPU_PRIOR=1 bash benchmarks/toyworld_tables.sh), which ran
# the same prompts. Made with the previous shipped prior (models/toy-prior-gpu8000), on which the
# preset was tuned, on the 24^3 grid the preset used before grid growth.
set -euo pipefail
out=${1:-results/bench/gpu-prior/sparsity-sweep}
shift || true
weights=(${@:-200 450 600})
gpu_prior=models/toy-prior-gpu8000/toy_prior_gpu8000.safetensors
prompts="a red sphere;a green cube;a blue cylinder;a yellow torus;a purple wedge;a red arrow;a green mug"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for w in "${weights[@]}"; do
  python3 benchmarks/toyworld_bench.py --prior toy --model "$gpu_prior" --estimators preset \
    --prompts "$prompts" --steps 600 --parts "${PARTS:-2}" --out "$out/$w" regularisers.opacity_sparsity="$w" \
    "growth.steps=[]" "growth.resolutions=[]" optim.lr_density=0.05
done
python3 - "$prompts" results/bench/gpu-prior/vocabulary-24 "${weights[@]/#/$out/}" <<'PY'
import json, sys
from pathlib import Path

prompts = sys.argv[1].split(";")
for folder in sys.argv[2:]:
    runs = json.loads((Path(folder) / "results.json").read_text())["runs"]
    last = {r["prompt"]: r["checkpoints"][-1] for r in runs if r["status"] == "ok"}
    iou = sum(last[p]["iou"] for p in prompts) / len(prompts)
    rp = sum(last[p]["r_precision"] for p in prompts) / len(prompts)
    print(f"{folder}: IoU {iou:.3f}, R-precision {rp:.3f} over {len(prompts)} prompts")
PY
