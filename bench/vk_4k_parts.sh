#!/usr/bin/env bash
# A 4K (3840x2160) CAN32 inference on the Vulkan device (lavapipe when there
# is no GPU) with the device memory forced to a quarter of what one pass
# needs, so the image runs in parts; it must equal the CPU forward (raw
# max-abs <= 1e-4, at most one 8-bit level). Minutes on lavapipe: not part
# of `make test`.
#
#   bash bench/vk_4k_parts.sh [BUILD] [PHOTO]
#     (MODEL: default the published parameterized L0 CAN32 at plane 0.5; FRACTION: default 0.25)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
photo=${2:-tests/data/can24/000001_input.png}
model=${MODEL:-tests/data/models/parameterized_L0_smoothing.safetensors}
fraction=${FRACTION:-0.25}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/cli/opforge" apply resize_bicubic "$photo" "$work/4k.png" --param width=3840 --param height=2160
planes=()
[[ "$model" == *parameterized* ]] && planes=(0.5)
"$build/bench/vk_forward_bench" "$model" "$work/4k.png" "$fraction" "${planes[@]}"
