#!/usr/bin/env bash
# Fan et al.'s filtering training set (17,000 PASCAL VOC images x 7 draws x
# 6 filters, about 0.7 M pairs), projected from measured datagen rates: each
# of the six shipped recipes (manifests/fan_{l0,wls,rtv,rgf,wmf,llf}.yaml)
# run by `opforge datagen` on VOC-size sources at 1 and 2 threads; prints
# pairs/s, the projected hours on one 2-core machine, each operator's share,
# and the wall time of a 64-task Slurm array (one 2-core task per 1/64 of
# the sources).
#
# VOC itself is not shipped: the sources are photos (default the 12 MIT-Adobe
# 1080p test photos) resized to the common VOC shapes 500x375, 375x500 and
# 500x333.
#
#   bash bench/fan_projection.sh [BUILD] [PHOTOS_DIR]   (THREADS="1 2", VOC_IMAGES=17000, TASKS=64)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
photos=$(cd "${2:-../shared/data/mit_adobe_test_1080p}" && pwd)
threads_list=${THREADS:-"1 2"}
voc_images=${VOC_IMAGES:-17000}
tasks=${TASKS:-64}
opforge="$build/cli/opforge"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/sources"
for photo in "$photos"/*.png "$photos"/*.jpg; do
  [ -f "$photo" ] || continue
  stem=$(basename "${photo%.*}")
  for shape in 500x375 375x500 500x333; do
    "$opforge" apply resize_bicubic "$photo" "$work/sources/${stem}_$shape.png" \
      --param width="${shape%x*}" --param height="${shape#*x}"
  done
done
sources=$(find "$work/sources" -name '*.png' | wc -l)
echo "$sources VOC-size sources (500x375, 375x500, 500x333) from $photos; 7 draws each"

declare -A rate
for recipe in l0 wls rtv rgf wmf llf; do
  for t in $threads_list; do
    out="$work/out_${recipe}_$t"
    line=$("$opforge" datagen "manifests/fan_$recipe.yaml" --sources "$work/sources" --out "$out" --threads "$t" -q)
    # "NAME: N pairs written, ... in S s (R pairs/s) -> DIR"
    rate[$recipe,$t]=$(sed -E 's/.*\(([0-9.]+) pairs\/s\).*/\1/' <<< "$line")
    echo "fan_$recipe, $t thread(s): $line"
    rm -rf "$out"
  done
done

last=${threads_list##* }
echo
printf '%-10s' recipe
for t in $threads_list; do printf '%14s' "pairs/s @$t"; done
printf '%16s %8s\n' "hours @$last" share
total=0
for recipe in l0 wls rtv rgf wmf llf; do
  hours=$(awk -v n="$voc_images" -v r="${rate[$recipe,$last]}" 'BEGIN { printf "%.2f", n * 7 / r / 3600 }')
  total=$(awk -v a="$total" -v b="$hours" 'BEGIN { printf "%.2f", a + b }')
done
for recipe in l0 wls rtv rgf wmf llf; do
  printf '%-10s' "fan_$recipe"
  for t in $threads_list; do printf '%14s' "${rate[$recipe,$t]}"; done
  hours=$(awk -v n="$voc_images" -v r="${rate[$recipe,$last]}" 'BEGIN { printf "%.2f", n * 7 / r / 3600 }')
  share=$(awk -v h="$hours" -v t="$total" 'BEGIN { printf "%.0f%%", 100 * h / t }')
  printf '%16s %8s\n' "$hours" "$share"
done
echo "Fan et al.'s filtering set ($voc_images images x 7 draws x 6 filters): $total h on one machine at $last thread(s)" \
  "(goal <= 12 h); a $tasks-task Slurm array: $(awk -v t="$total" -v k="$tasks" 'BEGIN { printf "%.2f h (%.0f min)", t / k, 60 * t / k }')"
