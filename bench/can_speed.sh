#!/usr/bin/env bash
# CAN inference on the CPU, measured in one run on one input:
#  1. opforge's direct kernels against the machine's SGEMM rate and against an
#     im2col + OpenBLAS SGEMM forward of the same network (bench/can_bench);
#  2. PyTorch's CPU forward of the same model file (bench/can_torch.py), with
#     its oneDNN convolutions (NCHW and NHWC) and with them turned off
#     (im2col + OpenBLAS),
#     and how far its output lies from opforge's;
#  3. the peak RSS of `opforge infer` on a 3840x2160 image with CAN32.
# PyTorch is a peer only: install it for this script with
# `apt-get install python3-torch` (Debian's); without it step 2 is skipped.
#
#   bash bench/can_speed.sh [BUILD] [MODEL] [IMAGE]     (THREADS=2; IMAGE: a 1920x1080 frame)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=${2:-tests/data/models/L0_smoothing.safetensors}
threads=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
photo=tests/data/can24/000001_input.png
# The default input: the published test photo at 1920x1080 (a 1080p frame).
image=${3:-$tmp/1080p.png}
[ $# -ge 3 ] || "$build/bench/can_bench" resize "$photo" "$image" 1920 1080

echo "== opforge (direct kernels) and im2col + OpenBLAS SGEMM"
"$build/bench/can_bench" speed "$model" "$image" --threads "$threads" \
  --write-input "$tmp/in.npy" --write-output "$tmp/ours.npy" | tee "$tmp/ours.txt"
ours=$(sed -n 's/^direct_seconds //p' "$tmp/ours.txt")

echo "== PyTorch CPU forward, same input, $threads threads"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  for flags in "" "--channels-last" "--no-mkldnn"; do
    /usr/bin/python3 bench/can_torch.py "$model" "$tmp/in.npy" --threads "$threads" $flags \
      --write-output "$tmp/torch.npy" > "$tmp/torch.json"
    /usr/bin/python3 - "$tmp/torch.json" "$tmp/torch.npy" "$tmp/ours.npy" "$ours" <<'PY'
import json, sys, numpy as np
r = json.load(open(sys.argv[1]))
diff = float(np.abs(np.load(sys.argv[2]) - np.load(sys.argv[3])).max())
path = ("oneDNN, NHWC" if r["channels_last"] else "oneDNN") if r["mkldnn"] else "im2col + BLAS"
print(f"torch {r['torch']} ({path}): {r['seconds']:.3f} s; opforge is {r['seconds'] / float(sys.argv[4]):.2f}x faster; "
      f"max |torch - opforge| = {diff:.2g}")
PY
  done
else
  echo "PyTorch is not installed (apt-get install python3-torch): the peer is skipped"
fi

echo "== peak RSS, opforge infer, CAN32 on 3840x2160"
"$build/bench/can_bench" resize "$photo" "$tmp/4k.png" 3840 2160
for m in parameterized_L0_smoothing:--planes=0.5 combined:--operator=L0_smoothing; do
  name=${m%%:*} flag=${m#*:}
  /usr/bin/time -f "%M %e" -o "$tmp/time.txt" "$build/cli/opforge" infer "tests/data/models/$name.safetensors" \
    "$tmp/4k.png" "$tmp/4k_out.png" "${flag%%=*}" "${flag#*=}" --threads "$threads"
  read -r kib seconds < "$tmp/time.txt"
  echo "$name: peak RSS $((kib / 1024)) MiB, $seconds s (whole process: decode, forward, encode)"
done
