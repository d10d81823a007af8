#!/usr/bin/env bash
# The README's three-seed ToyWorld tables, made side by side in parallel processes:
#   bash benchmarks/toyworld_tables.sh [OUT] [key=value ...]      (e.g. device=cuda)
# - OUT/toy, OUT/exact-seeds: SDS (7.5, 100), CSD, NFSD, SSD, SSD tau=600 x 4 prompts x 3 seeds;
# - OUT/exact-smoothed: four of them with the exact prior smoothed (exact.smoothing=0.1);
# - OUT/vocabulary: the default `ssd3d generate` (toy prior, SSD, 600 steps) on all prompts;
#   OUT/vocabulary-24: the same on a 24^3 grid throughout (the preset before grid growth);
#   OUT/vocabulary-no-sparsity: that, also without the toy preset's opacity sparsity.
# PARTS processes per table (default 4). Each folder continues where it stopped when the
# command runs again. Then: bash scripts/update_readme.sh tables.
set -euo pipefail
out=${1:-bench}
shift || true
parts=${PARTS:-4}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
estimators="sds guidance_scale=7.5;sds guidance_scale=100;csd;nfsd;ssd;ssd tau=600"
grid=(python3 benchmarks/toyworld_bench.py --seeds 3 --parts "$parts")
"${grid[@]}" --prior toy --estimators "$estimators" --out "$out/toy" "$@" &
"${grid[@]}" --prior exact --estimators "$estimators" --out "$out/exact-seeds" "$@" &
"${grid[@]}" --prior exact --out "$out/exact-smoothed" \
  --estimators "sds guidance_scale=7.5;csd;nfsd;ssd" "$@" exact.smoothing=0.1 &
python3 benchmarks/toyworld_bench.py --prior toy --estimators ssd --prompts all --steps 600 \
  --parts "$parts" --out "$out/vocabulary" "$@" &
no_growth=("growth.steps=[]" "growth.resolutions=[]" optim.lr_density=0.05)
python3 benchmarks/toyworld_bench.py --prior toy --estimators ssd --prompts all --steps 600 \
  --parts "$parts" --out "$out/vocabulary-24" "$@" "${no_growth[@]}" &
python3 benchmarks/toyworld_bench.py --prior toy --estimators ssd --prompts all --steps 600 \
  --parts "$parts" --out "$out/vocabulary-no-sparsity" "$@" "${no_growth[@]}" \
  regularisers.opacity_sparsity=0 &
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
exit $failed
