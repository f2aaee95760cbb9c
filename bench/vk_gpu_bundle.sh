#!/usr/bin/env bash
# Packs what bench/vk_gpu_run.sh needs on a GPU machine that has a Vulkan
# driver but none of opforge's Debian libraries (a CUDA image, say): the
# Vulkan benchmark, the shared libraries it loads (OpenCV, TBB, ... as this
# machine has them, reference BLAS/LAPACK instead of OpenBLAS, which the
# benchmark never calls), Debian's Vulkan loader, and a 1920x1080 frame.
# glibc itself is left to the target (any glibc at least as new as this
# machine's runs these libraries).
#
#   bash bench/vk_gpu_bundle.sh [BUILD] [OUT=out/vk_gpu.tar.xz]
#
# then on the GPU machine, from the repository's root:
#   bash bench/vk_gpu_run.sh out/vk_gpu.tar.xz RESULTS_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-out/vk_gpu.tar.xz}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/vk_gpu/bin" "$tmp/vk_gpu/lib" "$tmp/vk_gpu/data" "$(dirname "$out")"

cp "$build/bench/vk_forward_bench" "$tmp/vk_gpu/bin/"
"$build/bench/can_bench" resize tests/data/can24/000001_input.png "$tmp/vk_gpu/data/1080p.png" 1920 1080 >/dev/null

libdir=/usr/lib/x86_64-linux-gnu
ldd "$build/bench/vk_forward_bench" | awk '$3 ~ /^\// {print $1, $3}' | while read -r name path; do
  case "$name" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) continue ;;
    libblas.so.3) cp -L "$libdir/blas/libblas.so.3" "$tmp/vk_gpu/lib/$name" ;;
    liblapack.so.3) cp -L "$libdir/lapack/liblapack.so.3" "$tmp/vk_gpu/lib/$name" ;;
    libopenblas.so.0) ;;  # only through the BLAS alternative above
    *) cp -L "$path" "$tmp/vk_gpu/lib/$name" ;;
  esac
done
# The reference LAPACK's own needs (gfortran, quadmath) came with OpenBLAS's.
for lib in libgfortran.so.5 libquadmath.so.0; do
  [ -e "$tmp/vk_gpu/lib/$lib" ] || cp -L "$libdir/$lib" "$tmp/vk_gpu/lib/"
done
cp -L "$libdir/libvulkan.so.1" "$tmp/vk_gpu/lib/"

# Every library resolves inside the bundle (or to glibc).
missing=$(LD_LIBRARY_PATH="$tmp/vk_gpu/lib" ldd "$tmp/vk_gpu/bin/vk_forward_bench" | grep -E "not found|openblas" || true)
if [ -n "$missing" ]; then
  echo "vk_gpu_bundle: unresolved: $missing" >&2
  exit 1
fi
# ... and runs here, on this machine's first Vulkan device, through the bundled loader.
"$build/bench/can_bench" resize tests/data/can24/000001_input.png "$tmp/small.png" 64 36 >/dev/null
LD_LIBRARY_PATH="$tmp/vk_gpu/lib" OPFORGE_VULKAN_LOADER="$tmp/vk_gpu/lib/libvulkan.so.1" \
  "$tmp/vk_gpu/bin/vk_forward_bench" tests/data/models/L0_smoothing.safetensors "$tmp/small.png" 1 | grep -q '^PASS'
tar -C "$tmp" -cJf "$out.tmp" vk_gpu
mv "$out.tmp" "$out"
echo "$out: $(du -h "$out" | cut -f1) ($(ls "$tmp/vk_gpu/lib" | wc -l) libraries)"
