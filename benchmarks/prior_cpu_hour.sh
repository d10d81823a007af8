#!/usr/bin/env bash
# The shipped prior's recipe on this machine's CPU: one run of `ssd3d toyworld train-prior`
# at its defaults, stopped at each stage (resumed from its checkpoint) and scored there by
# `eval-prior` with two sampling seeds:
#   bash benchmarks/prior_cpu_hour.sh DATASET [OUT] [key=value ...]
# DATASET: `ssd3d toyworld render-dataset` output (the default one is in ~/.cache/ssd3d).
# OUT (default results/prior_recipes/cpu-hour) gets eval_STEPS_leading[_seedN].json
# (tabulate: python scripts/prior_recipes.py); the priors stay in $WORK (default
# /tmp/prior_cpu_hour). STAGES (default "3000 4000") are cumulative steps: the training
# wall time the card reports is the sum over stages, evaluation excluded.
set -euo pipefail
data=${1:?usage: bash benchmarks/prior_cpu_hour.sh DATASET [OUT] [key=value ...]}
out=${2:-results/prior_recipes/cpu-hour}
shift $(( $# < 2 ? $# : 2 ))
work=${WORK:-/tmp/prior_cpu_hour}
ssd3d=(python3 -m ssd3d.cli toyworld)
mkdir -p "$work" "$out"
for stage in ${STAGES:-3000 4000}; do
  resume=()
  [ -f "$work/checkpoint.safetensors" ] && resume=(--resume)
  "${ssd3d[@]}" train-prior "$data" "$@" threads=2 --out "$work" --steps "$stage" \
    "${resume[@]}" --no-grid > "$work/train_$stage.log" 2>&1
  cp "$work/toy_prior.safetensors" "$work/prior_$stage.safetensors"
  for seed in 0 1; do
    suffix=$([ "$seed" = 0 ] || echo "_seed$seed")
    "${ssd3d[@]}" eval-prior --prior "$work/prior_$stage.safetensors" --seed "$seed" \
      --out "$out/eval_${stage}_leading$suffix.json" | tail -n 2 | head -n 1
  done
done
