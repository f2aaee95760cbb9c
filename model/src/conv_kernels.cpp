#include "conv_kernels.hpp"

#include <cstddef>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPFORGE_HAVE_X86 1
#endif

namespace opforge::model::detail {
namespace {

// Plain loops: the reference the vector kernel is tested against, and the
// path on CPUs without AVX2+FMA.
template <int V, int P>
void portable_block(const Tap* taps, int tap_count, int cin, int stride, std::ptrdiff_t shift, float* acc) {
  constexpr int width = V * kLanes;
  float sums[P][width] = {};
  for (int t = 0; t < tap_count; ++t) {
    const float* in = taps[t].input + shift;
    const float* w = taps[t].weights;
    for (int i = 0; i < cin; ++i, w += stride) {
      for (int p = 0; p < P; ++p) {
        const float v = in[p * cin + i];
        for (int c = 0; c < width; ++c) sums[p][c] += v * w[c];
      }
    }
  }
  for (int p = 0; p < P; ++p)
    for (int c = 0; c < width; ++c) acc[p * width + c] = sums[p][c];
}

#ifdef OPFORGE_HAVE_X86
template <int V, int P>
__attribute__((target("avx2,fma"))) inline void avx2_block(const Tap* taps, int tap_count, int cin, int stride,
                                                           std::ptrdiff_t shift, float* acc) {
  __m256 sums[P][V];
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < V; ++v) sums[p][v] = _mm256_setzero_ps();
  for (int t = 0; t < tap_count; ++t) {
    const float* in = taps[t].input + shift;
    const float* w = taps[t].weights;
    for (int i = 0; i < cin; ++i, w += stride) {
      // P broadcasts and one weight vector live at a time: with P·V
      // accumulators that stays within the 16 vector registers (no spills).
      __m256 x[P];
      for (int p = 0; p < P; ++p) x[p] = _mm256_broadcast_ss(in + p * cin + i);
      for (int v = 0; v < V; ++v) {
        const __m256 weights = _mm256_loadu_ps(w + v * kLanes);
        for (int p = 0; p < P; ++p) sums[p][v] = _mm256_fmadd_ps(x[p], weights, sums[p][v]);
      }
    }
  }
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(acc + (p * V + v) * kLanes, sums[p][v]);
}

template <int V, int P>
__attribute__((target("avx2,fma"))) void avx2_kernel(int blocks, const Tap* taps, int tap_count, int cin, int stride,
                                                     float* acc) {
  for (int b = 0; b < blocks; ++b) {
    avx2_block<V, P>(taps, tap_count, cin, stride, std::ptrdiff_t(b) * P * cin, acc + b * P * V * kLanes);
  }
}
#endif

template <int V, int P>
void portable_kernel(int blocks, const Tap* taps, int tap_count, int cin, int stride, float* acc) {
  for (int b = 0; b < blocks; ++b) {
    portable_block<V, P>(taps, tap_count, cin, stride, std::ptrdiff_t(b) * P * cin, acc + b * P * V * kLanes);
  }
}

using Kernel = void (*)(int, const Tap*, int, int, int, float*);

template <int V>
Kernel pick(bool vectorised, bool single) {
  constexpr int P = block_pixels(V);
#ifdef OPFORGE_HAVE_X86
  if (vectorised) return single ? avx2_kernel<V, 1> : avx2_kernel<V, P>;
#else
  (void)vectorised;
#endif
  return single ? portable_kernel<V, 1> : portable_kernel<V, P>;
}

}  // namespace

void run_kernel(bool vectorised, int vectors, int pixels, int blocks, const Tap* taps, int tap_count, int cin,
                int weight_stride, float* acc) {
  const bool single = pixels == 1;
  Kernel kernel = nullptr;
  switch (vectors) {
    case 1: kernel = pick<1>(vectorised, single); break;
    case 2: kernel = pick<2>(vectorised, single); break;
    case 3: kernel = pick<3>(vectorised, single); break;
    default: kernel = pick<4>(vectorised, single); break;
  }
  kernel(blocks, taps, tap_count, cin, weight_stride, acc);
}

bool cpu_has_avx2_fma() {
#ifdef OPFORGE_HAVE_X86
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace opforge::model::detail
