#!/usr/bin/env bash
# Installs the Debian 12 packages opforge needs to build, test and benchmark.
# Idempotent: when every package is present it only runs dpkg-query and exits.
# Runs at most one `apt-get update`, and only when something is missing.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config ccache
  # core: images and codecs (OpenCV contrib is a test/bench peer only)
  libopencv-dev libopencv-contrib-dev libjpeg62-turbo-dev libpng-dev zlib1g-dev libdeflate-dev
  # numerics and parallelism
  libeigen3-dev libsuitesparse-dev libfftw3-dev libtbb-dev
  # optimised BLAS/LAPACK for the dense fronts of the grid Cholesky (and of
  # CHOLMOD, its peer). The pthread flavour: the serial one is not safe to
  # call from several threads; opforge sets it to one thread per call.
  libopenblas0-pthread
  # and its headers, for bench/can_bench's GEMM peak and im2col + SGEMM peer
  libopenblas-dev
  # Vulkan runtime: loader + headers, GLSL compiler, Mesa's lavapipe (CPU ICD);
  # the Khronos validation layer every Vulkan test runs under, and vulkaninfo
  libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  # CLI, recipes, metadata
  libboost-program-options-dev libyaml-cpp-dev nlohmann-json3-dev
  # the Python package (Debian's Python) and its tests
  python3-dev pybind11-dev python3-numpy
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
)

# `install-deps.sh fuzz` adds what bench/fuzz.sh needs: clang with libFuzzer
# and the sanitizer runtimes, and LLVM's OpenMP (CHOLMOD's callers use it).
if [ "${1:-}" = "fuzz" ]; then
  packages=(clang libclang-rt-14-dev libomp-dev)
fi

# One dpkg-query for all packages; unknown ones are simply absent from its output.
installed=" $(dpkg-query -W -f='${Package}:${db:Status-Status} ' "${packages[@]}" 2>/dev/null || true) "
missing=()
for p in "${packages[@]}"; do
  [[ "$installed" == *" $p:installed "* ]] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-deps: missing packages (${missing[*]}) and not root; install them as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
