#!/usr/bin/env bash
# Runs every benchmark in bench/ (each compares opforge against a peer in the
# same process and prints the ratios at the end). Not part of `make test`:
# timings on a shared 2-core machine are measured, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
for b in "$build"/bench/*_bench; do
  echo "== $(basename "$b")"
  "$b" --benchmark_color=false
done
