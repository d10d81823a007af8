#!/usr/bin/env bash
# Regenerate every figure and table in README.md from the commands that produce them.
#   bash scripts/update_readme.sh [sim] [generate] [bench] [sd] [screenshots]   (default: all)
# (sd only tabulates benchmarks/results/sd_*.json: run benchmarks/sd_gpu.sh on a GPU first)
set -euo pipefail
cd "$(dirname "$0")/.."
parts=("${@:-sim generate bench sd screenshots}")
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
    sd)
      python scripts/sd_results.py | python scripts/readme_section.py sd
      ;;
    screenshots)
      python scripts/screenshots.py
      ;;
    *) echo "unknown part: $part" >&2; exit 2 ;;
  esac
done
