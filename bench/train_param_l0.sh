#!/usr/bin/env bash
# The issue's parameterized bench: Chen et al.'s parameterized CAN32, Fan et
# al.'s decoupled network and Fan's cheap-tuning variant, each trained with
# the same budget on l0_smooth with lambda log-uniform over [0.002, 0.2]
# (a dataset made by `opforge datagen` from photos outside the repository,
# default the 12 MIT-Adobe 1080p test photos at 480p, PAIRS lambdas per
# photo, 2 photos held out by content hash), from the shipped configs with
# their step counts set by the budget; then `opforge eval --json` of each on
# the held-out pairs, per lambda bin. CAN24=MODEL adds a CAN24 trained at
# lambda = 0.02 alone (bench/train_can24_l0.sh), evaluated across the bins.
#
#   bash bench/train_param_l0.sh [BUILD] [PHOTOS_DIR]
#     THREADS=2 PAIRS=8 CAN32_STEPS=... FAN_STEPS=... CHEAP_STEPS=... CROP=256 FAN_CROP=128 FAN_BATCH=4
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
photos=$(cd "${2:-../shared/data/mit_adobe_test_1080p}" && pwd)
threads=${THREADS:-2}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
cat > "$work/recipe.yaml" <<YAML
name: l0_param_bench
seed: 2020
sources:
  directory: $photos
preprocess:
  resize_short_side: 480
pairs_per_source: ${PAIRS:-8}
operators:
  - name: l0_smooth
    params:
      lambda: {log_uniform: [0.002, 0.2]}
YAML
[ -f "$work/data/metadata.jsonl" ] || "$build/cli/opforge" datagen "$work/recipe.yaml" --out "$work/data" --threads "$threads" -q
# The shipped configs with the bench's crops and batches (2 cores, not a GPU).
sed -e "s/^crop: .*/crop: ${CROP:-256}/" manifests/train/can32_param_l0.yaml > "$work/can32.yaml"
for variant in fan_decoupled fan_cheap_tuning; do
  sed -e "s/^crop: .*/crop: ${FAN_CROP:-128}/" -e "s/^batch: .*/batch: ${FAN_BATCH:-4}/" \
      -e "s/^schedule: .*/schedule: {kind: constant}/" "manifests/train/${variant}_l0.yaml" > "$work/$variant.yaml"
done
run() {  # NAME CONFIG STEPS
  local start=$(date +%s)
  "$build/cli/opforge" train "$2" --data "$work/data" --out "$work/$1.safetensors" --threads "$threads" --steps "$3" \
    --log "$work/$1.log.jsonl" -q
  echo "$1: $(( $(date +%s) - start )) s for $3 steps"
  "$build/cli/opforge" eval "$work/$1.safetensors" --data "$work/data" --json > "$work/$1.eval.json"
  cat "$work/$1.eval.json"
}
run can32_param "$work/can32.yaml" "${CAN32_STEPS:-1000}"
run fan_decoupled "$work/fan_decoupled.yaml" "${FAN_STEPS:-500}"
run fan_cheap_tuning "$work/fan_cheap_tuning.yaml" "${CHEAP_STEPS:-500}"
if [ -n "${CAN24:-}" ]; then
  "$build/cli/opforge" eval "$CAN24" --data "$work/data" --json > "$work/can24_at_0.02.eval.json"
  cat "$work/can24_at_0.02.eval.json"
fi
echo "results: $work"
