#!/usr/bin/env bash
# Which training recipe gives a toy prior whose samples the judge recognises? Trains variants
# side by side, stage by stage (resumed), and scores every stage with `eval-prior`:
#   DEVICE=cuda bash benchmarks/prior_recipes.sh DATASET [OUT] [SECONDS]
# DATASET: `ssd3d toyworld render-dataset` output (the default one is in ~/.cache/ssd3d).
# OUT (default results/prior_recipes) gets RUN/eval_STEPS_SPACING.json; the
# priors stay in $WORK (default /tmp/prior_recipes). SECONDS (default 430) bounds the
# training: a stage still running then is stopped. Tabulate: python scripts/prior_recipes.py.
# The committed results come from an H200 (four runs sharing it, ~22 steps/s each); on a
# 2-core CPU each run takes about an hour per 4000 steps.
set -uo pipefail
data=${1:?usage: bash benchmarks/prior_recipes.sh DATASET [OUT] [SECONDS]}
out=${2:-results/prior_recipes}
deadline=$(( $(date +%s) + ${3:-430} ))
device=${DEVICE:-cuda}
work=${WORK:-/tmp/prior_recipes}
stages=${STAGES:-"4000 8000 12000 16000 20000 24000"}
ssd3d=(python3 -m ssd3d.cli toyworld)

run() {  # NAME [key=value ...]: train NAME's stages in turn until the deadline
  local name=$1 dir=$work/$1 stage left resume spacing
  shift
  mkdir -p "$dir" "$out/$name"
  for stage in $stages; do
    left=$(( deadline - $(date +%s) ))
    [ "$left" -gt 15 ] || break
    resume=()
    [ -f "$dir/checkpoint.safetensors" ] && resume=(--resume)
    # SIGINT at the deadline: train-prior saves its checkpoint, so a rerun goes on from there.
    if ! timeout -s INT -k 10 "$left" "${ssd3d[@]}" train-prior "$data" "$@" threads=2 \
        checkpoint_every=4000 --out "$dir" --steps "$stage" "${resume[@]}" --no-grid \
        --device "$device" > "$dir/train_$stage.log" 2>&1; then
      echo "$name: stage $stage stopped"
      break
    fi
    cp "$dir/toy_prior.safetensors" "$dir/prior_$stage.safetensors"
    for spacing in leading trailing; do
      "${ssd3d[@]}" eval-prior --prior "$dir/prior_$stage.safetensors" --spacing "$spacing" \
        --device "$device" --out "$out/$name/eval_${stage}_$spacing.json" | tail -n 2 | head -n 1
    done
  done
}

# Variants of the defaults of then (today's shipped recipe: benchmarks/prior_cpu_hour.sh).
then=(lr=3e-4 warmup_steps=0)
run base "${then[@]}" min_snr_gamma=0 &                 # the previous (GPU) prior's recipe
run minsnr "${then[@]}" min_snr_gamma=5 &               # Min-SNR loss weighting
run wide "${then[@]}" min_snr_gamma=0 unet.base_channels=32 &   # 3.2M parameters, not 1.8M
run big "${then[@]}" unet.base_channels=32 min_snr_gamma=5 batch_size=128 &
wait
