#!/usr/bin/env bash
# Stable Diffusion step time and memory on a GPU, for docs/results/sd-gpu.md:
#   bash benchmarks/sd_gpu.sh [OUT_DIR]      (default results/sd)
# Uses SD 2.1-base's architecture with random weights (benchmarks/sd_step.py --random
# sd2.1-base): the same compute and memory as the real checkpoint, and no download, so it
# runs on a machine without internet. Each result JSON records the device.
set -euo pipefail
out=${1:-results/sd}
folder=${SSD3D_RANDOM_SD:-/tmp/ssd3d_random_sd2.1-base}
bench=(python benchmarks/sd_step.py --random sd2.1-base --random-folder "$folder" --device cuda)
# The preset (configs/stable-diffusion.yaml) as `ssd3d generate` runs it, step by step.
"${bench[@]}" --step pipeline --estimator ssd --steps 300 --warmup 10 --out "$out/sd_pipeline_step_cuda.json"
# Four views per step: memory grows with the batch through the VAE at 512x512.
"${bench[@]}" --step pipeline --estimator ssd --batch 4 --steps 50 --warmup 5 --out "$out/sd_pipeline_step_cuda_batch4.json"
# Distillation alone, per estimator: SSD's extra maths against SDS, NFSD's third branch.
for est in sds ssd nfsd; do
  "${bench[@]}" --step distill --estimator "$est" --steps 100 --warmup 10 --out "$out/sd_distill_step_cuda_$est.json"
done
