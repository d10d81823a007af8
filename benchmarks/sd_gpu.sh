#!/usr/bin/env bash
# Stable Diffusion on one GPU: the gpu-marked tests, then step time and memory of the preset's
# pipeline step, eager and compiled, at 1 and 4 views (docs/gpu.md says what each row is):
#   bash benchmarks/sd_gpu.sh [OUT_DIR]      (default results/sd_gpu)
# Writes OUT_DIR/*.json (one per run) and *.log (its printed table), docs/results/gpu.md (the
# table of every JSON in OUT_DIR) and docs/results/sd_profile.md (torch profiler, 1 view).
# About 8 minutes on an H200, most of it compiling; kernels are cached in
# TORCHINDUCTOR_CACHE_DIR (default .cache/torchinductor here), so a rerun compiles faster.
# Uses SD 2.1-base's architecture with random weights (benchmarks/sd_step.py --random
# sd2.1-base): the same compute and memory as the real checkpoint, and no download, so it
# runs on a machine without internet. Each result JSON records the device.
#   MODES_1="none default reduce-overhead"  compile modes timed at 1 view; at 4 views: eager
#                                           and the fastest compiled one of those
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/sd_gpu}
mkdir -p "$out" docs/results
modes_1=${MODES_1:-none default reduce-overhead}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.cache/torchinductor}
# This checkout's code, whatever else is installed.
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
# Nothing beyond the repo's own extras, and only when missing (the machine may be offline).
python -c "import diffusers, transformers, pytest" 2>/dev/null || python -m pip install -e ".[sd,dev]"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
start=$SECONDS
lap() { echo "== $1 ($((SECONDS - start)) s)"; }

lap "gpu tests"
python -m pytest -m gpu -q -p no:cacheprovider

lap "random SD 2.1-base pipeline"
folder=${SSD3D_RANDOM_SD:-/tmp/ssd3d_random_sd2.1-base}
bench=(python benchmarks/sd_step.py --random sd2.1-base --random-folder "$folder" --device cuda
  --step pipeline --estimator ssd --floor)
tables() { python scripts/sd_results.py "$out"/*.json --out docs/results/gpu.md; }

# The preset (configs/stable-diffusion.yaml) as `ssd3d generate` runs it, step by step.
lap "1 view: $modes_1"
# shellcheck disable=SC2086  # one word per mode
"${bench[@]}" --compile $modes_1 --steps 100 --warmup 10 \
  --profile docs/results/sd_profile.md --out "$out/pipeline_1view.json" | tee "$out/pipeline_1view.log"
tables
best=$(python - "$out/pipeline_1view.json" <<'EOF'
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["rows"] if r["compile"] != "none" and not r["name"].startswith("floor")]
print(min(rows, key=lambda r: r["stages"]["total"]["median_ms"])["compile"] if rows else "")
EOF
)

# The layout and algorithm choices, eager: what channels-last and cudnn.benchmark are worth.
lap "1 view, eager, without channels-last / cudnn benchmark"
"${bench[@]}" --no-channels-last --steps 50 --warmup 5 \
  --out "$out/pipeline_1view_no_channels_last.json" | tee "$out/pipeline_1view_no_channels_last.log"
"${bench[@]}" --no-cudnn-benchmark --steps 50 --warmup 5 \
  --out "$out/pipeline_1view_no_cudnn_benchmark.json" | tee "$out/pipeline_1view_no_cudnn_benchmark.log"
tables

# Four views per step: memory grows with the batch through the VAE at 512x512.
lap "4 views: none $best"
# shellcheck disable=SC2086
"${bench[@]}" --batch 4 --compile none $best --steps 40 --warmup 5 \
  --out "$out/pipeline_4views.json" | tee "$out/pipeline_4views.log"
tables
# The memory target at four views: the VAE encoder's activations recomputed in backward.
lap "4 views, VAE checkpointing"
"${bench[@]}" --batch 4 --vae-checkpointing --steps 40 --warmup 5 \
  --out "$out/pipeline_4views_vae_checkpointing.json" | tee "$out/pipeline_4views_vae_checkpointing.log"
tables
lap "done"
