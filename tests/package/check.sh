#!/usr/bin/env bash
# Installs opforge from BUILD into a temporary prefix, configures and builds
# tests/package (a project of its own that finds the package) against it,
# and runs it; with PYTHON set, also imports the installed Python package with
# that interpreter and runs an operator. Exit status: 0 when all ran right.
#
#   [PYTHON=/usr/bin/python3] bash tests/package/check.sh BUILD [CXX_COMPILER [SANITIZERS]]
# (the build's compiler, and its -fsanitize= list when it has one: the
# consumer must be compiled as the static libraries were).
set -euo pipefail
build=$(cd "$1" && pwd)
compiler=${2:-c++}
flags=()
if [ -n "${3:-}" ]; then
  flags=(-DCMAKE_CXX_FLAGS="-fsanitize=$3" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$3")
fi
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > /dev/null
cmake -S "$here" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$compiler" "${flags[@]}" > /dev/null
cmake --build "$work/consumer" > /dev/null
"$work/consumer/consumer"
if [ -n "${PYTHON:-}" ]; then
  site=$(echo "$work"/prefix/lib/python3*/dist-packages)
  (cd "$work" && PYTHONPATH="$site" "$PYTHON" -c '
import numpy, opforge
assert opforge.__file__.startswith("'"$site"'"), opforge.__file__
out = opforge.l0_smooth(numpy.full((9, 11, 3), 0.25, numpy.float32))
assert out.shape == (9, 11, 3) and abs(float(out.mean()) - 0.25) < 1e-6, out.mean()
print("installed Python package: l0_smooth ran")')
fi
