#!/usr/bin/env bash
# `make run` until datagen lands: applies l0_smooth to the sample images shipped
# in tests/data/, writes the results to out/, and prints each run's time and,
# where the authors' reference output exists, the PSNR against it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
opforge="$build/cli/opforge"
data=tests/data
mkdir -p out

printf '%-34s %-8s %9s  %s\n' "input" "lambda" "seconds" "PSNR vs authors' L0Smoothing.m (16-bit PNG)"
run_case() {  # input-path lambda reference-png-or-empty
  local input=$1 lambda=$2 reference=$3
  local name out t0 t1 psnr
  name=$(basename "${input%.*}")
  out="out/${name}_l0_smooth_lambda${lambda}.png"
  t0=$EPOCHREALTIME
  "$opforge" apply l0_smooth "$input" "$out" --param "lambda=$lambda" --depth 16
  t1=$EPOCHREALTIME
  psnr="(no reference)"
  if [ -n "$reference" ]; then
    psnr=$("$opforge" metrics "$out" "$reference" --json |
      sed -E 's/.*"psnr_db":([^,}]*).*/\1/' | awk '{ if ($1 == "null") print "identical"; else printf "%.2f dB\n", $1 }')
  fi
  printf '%-34s %-8s %9.3f  %s\n' "$(basename "$input")" "$lambda" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$psnr"
}

for input in "$data"/conformance/inputs/*.png; do
  name=$(basename "${input%.png}")
  for lambda in 0.002 0.02 0.2; do
    run_case "$input" "$lambda" "$data/conformance/l0/${name}_lambda${lambda}.png"
  done
done
for input in "$data"/samples/*; do
  run_case "$input" 0.02 ""
done
echo "results in out/"
