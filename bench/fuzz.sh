#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (tests/fuzz/) under libFuzzer with
# AddressSanitizer + UndefinedBehaviorSanitizer, SECONDS each (default 60),
# starting from a copy of its seed corpus in tests/data/fuzz/<target>/.
# Prints, per target, the executions run and the coverage reached. A crash is
# saved as build-fuzz/crashes/<target>/crash-*: fix it, then copy the file
# into tests/data/fuzz/<target>/, where `make test` replays it for ever.
#
#   bash bench/fuzz.sh [SECONDS] [TARGET...]      (targets: png jpeg npy safetensors model recipe journal)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(png jpeg npy safetensors model recipe journal)

bash scripts/install-deps.sh fuzz
build=build-fuzz
mkdir -p "$build"
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPFORGE_SANITIZE=address,undefined \
  -DOPFORGE_FUZZ=ON -DOPFORGE_BUILD_BENCH=OFF > "$build/configure.log"
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" > "$build/build.log" ||
  { echo "fuzz.sh: the build failed; see $build/build.log" >&2; exit 1; }

export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
printf '%-12s %12s %8s %8s %8s  %s\n' target execs exec/s cov features result
status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t" crashes="$build/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  cp -n tests/data/fuzz/"$t"/* "$corpus"/ 2>/dev/null || true
  log="$build/fuzz-$t.log"
  result=ok
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2560 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$corpus" > "$log" 2>&1 || { result="CRASH: see $log and $crashes/"; status=1; }
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  printf '%-12s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit $status
