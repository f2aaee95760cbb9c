#!/usr/bin/env bash
# A CAN24 training step in opforge and in PyTorch on the same 512x512 crop, in
# one run: the loss and every gradient compared (goal: within 1e-4 relative),
# and the time of a whole step (forward, MSE, backward, Adam) in both.
# PyTorch (Debian's python3-torch) is a peer only.
#
#   bash bench/can_train_parity.sh [BUILD] [MODEL] [IMAGE]    (THREADS=2, CROP=512)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=${2:-tests/data/models/L0_smoothing.safetensors}
image=${3:-tests/data/can24/000001_input.png}
threads=${THREADS:-2}
crop=${CROP:-512}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/bench/learner_bench" "$model" "$image" --crop "$crop" --threads "$threads" --out "$tmp" | tee "$tmp/ours.txt"
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "PyTorch is not installed (apt-get install python3-torch): the comparison is skipped"
  exit 0
fi
/usr/bin/python3 bench/can_train_parity.py "$model" "$tmp" --threads "$threads" | tee "$tmp/torch.txt"
ours=$(sed -n 's/^opforge_step_seconds //p' "$tmp/ours.txt")
theirs=$(sed -n 's/^torch_step_seconds //p' "$tmp/torch.txt")
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "training step: opforge %.3f s, torch %.3f s: opforge is %.2fx %s\n", a, b, (a < b ? b / a : a / b), (a < b ? "faster" : "slower") }'
