#!/usr/bin/env bash
# CAN24 (the published L0 file) on a 1080p photo: the Vulkan device (the
# first listed: lavapipe without a GPU) against the CPU forward, in the same
# run, fp32 and fp16 storage, with GFLOP/s and the difference of each from
# the CPU's output.
#
#   bash bench/vk_speed.sh [BUILD] [PHOTO]   (default: MIT-Adobe 000001, 1080x1627)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
photo=${2:-tests/data/can24/000001_input.png}
model=tests/data/models/L0_smoothing.safetensors
"$build/cli/opforge" infer --list-devices
"$build/bench/vk_forward_bench" "$model" "$photo" 1
"$build/bench/vk_forward_bench" "$model" "$photo" 1 --fp16
