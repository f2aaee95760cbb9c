#!/usr/bin/env bash
# The same 300-step CAN24 run in opforge and in PyTorch: one dataset (npy
# pairs of l0_smooth at lambda 0.02 from photos outside the repository, at
# 256 px), opforge trains with --log, PyTorch replays the log's data order
# with the same initialisation and Adam settings; both loss curves and both
# held-out PSNRs are printed (goal: within 0.2 dB). PyTorch is a peer only.
#
#   bash bench/can_train_equivalence.sh [BUILD] [PHOTOS_DIR]    (THREADS=2, STEPS=300)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
photos=$(cd "${2:-../shared/data/mit_adobe_test_1080p}" && pwd)
threads=${THREADS:-2}
steps=${STEPS:-300}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/recipe.yaml" <<YAML
name: can24_equivalence
seed: 11
sources:
  directory: $photos
preprocess:
  resize_short_side: 256
pairs_per_source: 1
operators:
  - name: l0_smooth
    params:
      lambda: 0.02
output:
  format: npy
YAML
cat > "$work/train.yaml" <<YAML
network: can24_an
adam: {learning_rate: 0.0003}
steps: $steps
crop: 128
flips: true
validation_sources: 2
validate_every: 0
checkpoint_every: 0
seed: 7
YAML
"$build/cli/opforge" datagen "$work/recipe.yaml" --out "$work/data" --threads "$threads" -q
"$build/cli/opforge" train "$work/train.yaml" --data "$work/data" --out "$work/m.safetensors" --log "$work/log.jsonl" \
  --threads "$threads" -q
/usr/bin/python3 bench/can_train_equivalence.py "$work/data" "$work/log.jsonl" "$work/m.safetensors" --threads "$threads"
