#!/usr/bin/env bash
# Regenerate every figure and table in README.md from the commands that produce them.
#   bash scripts/update_readme.sh [sim] [generate] [bench] [tables] [smoothing] [sd] [batch]
#                                 [screenshots]                      (default: all)
# (tables reads bench/{toy,exact-seeds,exact-smoothed,vocabulary} and bench/gpu-prior/vocabulary*,
# made by GPU_PRIOR=1 bash benchmarks/toyworld_tables.sh; sd only tabulates benchmarks/results/sd_*.json: run
# benchmarks/sd_gpu.sh on a GPU first)
set -euo pipefail
cd "$(dirname "$0")/.."
parts=("${@:-sim generate bench tables smoothing sd batch screenshots}")
parts=(${parts[*]})
mkdir -p docs/figures
for part in "${parts[@]}"; do
  case "$part" in
    sim)
      ssd3d simulate --out outputs/simulate
      python scripts/sim_results.py outputs/simulate/metrics.json \
        | python scripts/readme_section.py simulations
      cp outputs/simulate/overlapping.png outputs/simulate/variance.png docs/figures/
      ;;
    generate)
      rm -rf outputs/readme
      ssd3d generate "a red cube" --out outputs/readme --quiet
      cp outputs/readme/a-red-cube/contact_sheet.png docs/figures/contact_sheet_red_cube.png
      ;;
    bench)
      python scripts/bench_readme.py bench/exact | python scripts/readme_section.py bench
      ;;
    tables)
      python scripts/bench_readme.py bench/toy bench/exact-seeds --names toy,exact \
        | python scripts/readme_section.py bench-priors
      python scripts/bench_readme.py bench/exact-seeds bench/exact-smoothed \
        --names exact,exact-smoothed | python scripts/readme_section.py bench-smoothing
      python scripts/vocabulary_readme.py bench/vocabulary \
        --compare bench/gpu-prior/vocabulary --compare-name "GPU prior: the same preset" \
        --compare bench/gpu-prior/vocabulary-24 \
        --compare-name "GPU prior: 24³ grid throughout, lr_density 0.05" \
        --compare bench/gpu-prior/vocabulary-no-sparsity \
        --compare-name "GPU prior: 24³ throughout, no opacity sparsity (regularisers.opacity_sparsity=0)" \
        | python scripts/readme_section.py vocabulary
      ;;
    smoothing)
      { echo '```'; python benchmarks/exact_smoothing.py; echo '```'; } \
        | python scripts/readme_section.py smoothing
      ;;
    sd)
      python scripts/sd_results.py | python scripts/readme_section.py sd
      ;;
    batch)
      python benchmarks/batch.py | python scripts/readme_section.py batch
      ;;
    screenshots)
      python scripts/screenshots.py
      ;;
    *) echo "unknown part: $part" >&2; exit 2 ;;
  esac
done
