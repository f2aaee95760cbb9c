#!/usr/bin/env bash
# Trains SRCNN 9-1-5 for x3 as the issue's bench asks: Y-channel bicubic
# pairs (sr_bicubic, scale 3, channels y, mode ilr, as manifests/sr_srcnn.yaml)
# made by `opforge datagen` from photos outside the repository (default: the
# 12 MIT-Adobe 1080p test photos), 2 sources held out by content hash, the
# shipped config manifests/train/srcnn_x3.yaml with STEPS steps; then the
# held-out Y-PSNR (border shaved by 3) against bicubic, the identity baseline.
#
#   bash bench/train_srcnn_x3.sh [BUILD] [PHOTOS_DIR]     (THREADS=2, STEPS=20000)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
photos=$(cd "${2:-../shared/data/mit_adobe_test_1080p}" && pwd)
threads=${THREADS:-2}
steps=${STEPS:-20000}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
cat > "$work/recipe.yaml" <<YAML
name: srcnn_x3_bench
seed: 2014
sources:
  directory: $photos
pairs_per_source: 1
operators:
  - name: sr_bicubic
    params:
      scale: 3
      channels: y
      mode: ilr
YAML
[ -f "$work/data/metadata.jsonl" ] || "$build/cli/opforge" datagen "$work/recipe.yaml" --out "$work/data" --threads "$threads" -q
start=$(date +%s)
"$build/cli/opforge" train manifests/train/srcnn_x3.yaml --data "$work/data" --out "$work/srcnn_x3.safetensors" \
  --threads "$threads" --steps "$steps" --log "$work/log.jsonl"
echo "training: $(( $(date +%s) - start )) s for $steps steps"
"$build/cli/opforge" eval "$work/srcnn_x3.safetensors" --data "$work/data" --json
echo "model: $work/srcnn_x3.safetensors"
