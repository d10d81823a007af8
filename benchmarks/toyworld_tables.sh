#!/usr/bin/env bash
# Every ToyWorld table in the README, side by side in parallel processes:
#   bash benchmarks/toyworld_tables.sh [OUT] [key=value ...]      (e.g. device=cuda)
# - OUT/toy, OUT/exact: the default grid (13 estimators x 4 prompts) x 3 seeds, each prior;
# - OUT/exact-smoothed: five estimators with the exact prior smoothed (exact.smoothing=0.1);
# - OUT/vocabulary: the default `ssd3d generate` (toy prior, SSD, 600 steps) on all prompts.
# PARTS processes per table (default 4). On a 2-core CPU this takes many hours; the README's
# tables ran on one GPU (the device is recorded in each results.json).
set -euo pipefail
out=${1:-bench}
shift || true
parts=${PARTS:-4}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
grid=(python3 benchmarks/toyworld_bench.py --seeds 3 --parts "$parts")
"${grid[@]}" --prior toy --out "$out/toy" "$@" &
"${grid[@]}" --prior exact --out "$out/exact" "$@" &
"${grid[@]}" --prior exact --out "$out/exact-smoothed" \
  --estimators "sds guidance_scale=7.5;csd;nfsd;ssd;ssd tau=600" "$@" exact.smoothing=0.1 &
python3 benchmarks/toyworld_bench.py --prior toy --estimators ssd --prompts all --steps 600 \
  --parts "$parts" --out "$out/vocabulary" "$@" &
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
exit $failed
