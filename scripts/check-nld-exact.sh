#!/usr/bin/env bash
# Opt-in exactness check of dehaze_nonlocal with the authors' haze-line table.
#
# The authors' TR1000.txt is under a non-commercial licence and is never part
# of opforge: this script reads it from where you have it (default: the
# conformance pack beside the repository) and checks the gates of
# OPERATORS.md §8 with it: ≥ 50 dB on the 8-bit output and ≥ 80 dB on the
# transmission. Not part of `make test`.
#   usage: scripts/check-nld-exact.sh [TR1000.txt] [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
table=${1:-../shared/conformance/nld/TR1000.txt}
build=${2:-build}
opforge="$build/cli/opforge"
refs=tests/data/conformance/nld
[ -f "$table" ] || { echo "check-nld-exact: no direction table at '$table'" >&2; exit 2; }
[ -x "$opforge" ] || { echo "check-nld-exact: build first (make test)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
psnr() { "$opforge" metrics "$1" "$2" --json | sed -E 's/.*"psnr_db":([^,}]*).*/\1/'; }
failed=0
for sidecar in "$refs"/*_default.json; do
  name=$(basename "${sidecar%.json}")
  input=tests/data/conformance/inputs/${name%_default}.png
  # airlight=auto is the dark-channel estimate, which equals the references' A.
  "$opforge" apply dehaze_nonlocal "$input" "$tmp/out.png" --param "directions=$table" --depth 16
  "$opforge" apply dehaze_nonlocal "$input" "$tmp/t.png" --param "directions=$table" --param output=transmission --depth 16
  out_db=$(psnr "$tmp/out.png" "$refs/$name.png")
  t_db=$(psnr "$tmp/t.png" "$refs/${name}__transmission.png")
  verdict=$(awk -v o="$out_db" -v t="$t_db" 'BEGIN {
    ok_o = (o == "null" || o + 0 >= 50); ok_t = (t == "null" || t + 0 >= 80);
    print (ok_o && ok_t) ? "ok" : "FAIL" }')
  [ "$out_db" = null ] && out_db=identical
  [ "$t_db" = null ] && t_db=identical
  printf '%-22s output %s dB (gate 50)   transmission %s dB (gate 80)   %s\n' "$name" "$out_db" "$t_db" "$verdict"
  [ "$verdict" = ok ] || failed=1
done
exit $failed
