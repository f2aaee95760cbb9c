#!/usr/bin/env bash
# The published CAN24_AN L0-smoothing results (Chen et al., ICCV 2017),
# reproduced by opforge's CPU forward, image by image: max |diff| and the
# share of values equal / off by one / off by more. The photos and results
# are not in the repository (the test suite carries one of them); point the
# script at a copy of the authors' data:
#
#   bash bench/can_published.sh [BUILD] [DATA_DIR]
#     DATA_DIR holds mit_adobe_test_1080p/ and can24_published/L0_smoothing/
#     (default: ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
data=${2:-../shared/data}
"$build/bench/can_bench" published tests/data/models/L0_smoothing.safetensors \
  "$data/mit_adobe_test_1080p" "$data/can24_published/L0_smoothing"
