#!/usr/bin/env bash
# `make run`: the main job on the sample images shipped in tests/data/.
#  1. generates the demo dataset of manifests/demo.yaml into out/demo/ and
#     prints its summary, then writes its contact sheet;
#  2. applies each operator to the conformance inputs and the 1 MP sample,
#     printing each run's time and, where the authors' reference output
#     exists, the PSNR against it (results in out/);
#  3. runs the published CAN models (Chen et al., ICCV 2017) with
#     `opforge infer`: CAN24 L0 smoothing on the published test photo, against
#     the authors' published result, and the combined network's
#     Detail_manipulation (an operator with no CAN24 file) on the sample;
#     then CAN24 L0 on the sample with --device vulkan (when there is a
#     Vulkan device) against the CPU's output.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
opforge="$build/cli/opforge"
data=tests/data
mkdir -p out

echo "== datagen: manifests/demo.yaml -> out/demo"
rm -rf out/demo
"$opforge" datagen manifests/demo.yaml --out out/demo
"$opforge" datagen preview manifests/demo.yaml --out out/demo-contact-sheet.png --pairs 12
echo "dataset: out/demo (metadata.jsonl, failures.jsonl, dataset.json, input/, output/, webdataset/)"
echo

echo "== operators on the sample images, against the authors' reference outputs"

printf '%-28s %-20s %-30s %8s  %s\n' "input" "operator" "parameters" "seconds" "PSNR vs the authors' code"
run_case() {  # input operator reference-png-or-empty NAME=VALUE...
  local input=$1 op=$2 reference=$3
  shift 3
  local name tag out t0 t1 psnr args=()
  name=$(basename "${input%.*}")
  tag=$(echo "$*" | tr ' =' '_-')
  out="out/${name}_${op}_${tag}.png"
  for p in "$@"; do args+=(--param "$p"); done
  t0=$EPOCHREALTIME
  "$opforge" apply "$op" "$input" "$out" "${args[@]}" --depth 16
  t1=$EPOCHREALTIME
  psnr="(no reference)"
  if [ -n "$reference" ]; then
    psnr=$("$opforge" metrics "$out" "$reference" --json |
      sed -E 's/.*"psnr_db":([^,}]*).*/\1/' | awk '{ if ($1 == "null") print "identical"; else printf "%.2f dB\n", $1 }')
  fi
  printf '%-28s %-20s %-30s %8.3f  %s\n' "$(basename "$input")" "$op" "$*" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$psnr"
}

refs=$data/conformance
for input in "$refs"/inputs/*.png; do
  name=$(basename "${input%.png}")
  run_case "$input" l0_smooth "$refs/l0/${name}_lambda0.02.png" lambda=0.02
  run_case "$input" wls_smooth "$refs/wls/${name}_lambda1.png" lambda=1
  run_case "$input" rtv_smooth "$refs/rtv/${name}_lambda0.01.png" lambda=0.01
  run_case "$input" rtv_smooth "$refs/rtv_direct/${name}_lambda0.01.png" lambda=0.01 solver=direct
  run_case "$input" rolling_guidance "$refs/rgf/${name}_sigmas3.png" sigma_s=3
  run_case "$input" local_laplacian "$refs/llf/${name}_fact5.png" fact=5
  run_case "$input" weighted_median "$refs/wmf/${name}_r5.png" radius=5
  run_case "$input" dehaze_dark_channel "$refs/dcp_guided/${name}_default.png" omega=0.95
  run_case "$input" dehaze_nonlocal "$refs/nld/${name}_default.png" gamma=1
done
for input in "$data"/samples/*; do
  run_case "$input" l0_smooth "" lambda=0.02
  run_case "$input" wls_smooth "" lambda=1
  run_case "$input" rtv_smooth "" lambda=0.01
  run_case "$input" dehaze_nonlocal "" gamma=1
  run_case "$input" sr_bicubic "" scale=3
done
echo
echo "== learned models: the published CAN files through opforge infer (CPU)"
infer_case() {  # model input output reference-or-empty infer-args...
  local model=$1 input=$2 out=$3 reference=$4 t0 t1 result="(no published result)"
  shift 4
  t0=$EPOCHREALTIME
  "$opforge" infer "$data/models/$model.safetensors" "$input" "$out" "$@"
  t1=$EPOCHREALTIME
  if [ -n "$reference" ]; then
    result=$("$opforge" metrics "$out" "$reference" --json |
      sed -E 's/.*"max_abs":([^,}]*).*/\1/' | awk -v r="$(basename "$reference")" '{ printf "max |diff| %.0f level(s) of 255 vs %s\n", $1 * 255, r }')
  fi
  printf '%-28s %-30s %8.3f  %s\n' "$(basename "$input")" "$model $*" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$result"
}
infer_case L0_smoothing "$data/can24/000001_input.png" out/000001_can24_L0_smoothing.png \
  "$data/can24/000001_L0_smoothing_published.png"
infer_case combined "$data/samples/mit_adobe_000003_1024.jpg" out/mit_adobe_000003_can32_detail.png "" \
  --operator Detail_manipulation
infer_case parameterized_L0_smoothing "$data/samples/mit_adobe_000003_1024.jpg" out/mit_adobe_000003_can32_l0_0.5.png "" \
  --planes 0.5
echo "== the same on the Vulkan device (the first listed: Mesa's lavapipe, a CPU driver, when there is no GPU)"
if "$opforge" infer --list-devices; then
  infer_case L0_smoothing "$data/samples/mit_adobe_000003_1024.jpg" out/mit_adobe_000003_can24_L0_cpu.png ""
  infer_case L0_smoothing "$data/samples/mit_adobe_000003_1024.jpg" out/mit_adobe_000003_can24_L0_vulkan.png \
    out/mit_adobe_000003_can24_L0_cpu.png --device vulkan
else
  echo "(no Vulkan device: skipped)"
fi
echo "results in out/"
