#include "weight_gradient.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPFORGE_HAVE_X86 1
#endif

namespace opforge::learner::detail {
namespace {

void portable(const float* x, int x_stride, const float* dy, int pixels, int cin, int cout, float* dw) {
  for (int p = 0; p < pixels; ++p) {
    const float* xp = x + static_cast<long>(p) * x_stride;
    const float* g = dy + static_cast<long>(p) * cout;
    for (int i = 0; i < cin; ++i) {
      const float v = xp[i];
      float* row = dw + static_cast<long>(i) * cout;
      for (int o = 0; o < cout; ++o) row[o] += v * g[o];
    }
  }
}

#ifdef OPFORGE_HAVE_X86
// I input channels × V vectors of output channels held in registers while
// the pixels stream past: I·V accumulators, I broadcasts, one dy vector.
template <int I, int V>
__attribute__((target("avx2,fma"))) void block(const float* x, int x_stride, const float* dy, int pixels, int cout,
                                                float* dw) {
  __m256 acc[I][V];
  for (int i = 0; i < I; ++i)
    for (int v = 0; v < V; ++v) acc[i][v] = _mm256_loadu_ps(dw + static_cast<long>(i) * cout + 8 * v);
  for (int p = 0; p < pixels; ++p) {
    const float* xp = x + static_cast<long>(p) * x_stride;
    const float* g = dy + static_cast<long>(p) * cout;
    __m256 b[I];
    for (int i = 0; i < I; ++i) b[i] = _mm256_broadcast_ss(xp + i);
    for (int v = 0; v < V; ++v) {
      const __m256 gv = _mm256_loadu_ps(g + 8 * v);
      for (int i = 0; i < I; ++i) acc[i][v] = _mm256_fmadd_ps(b[i], gv, acc[i][v]);
    }
  }
  for (int i = 0; i < I; ++i)
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(dw + static_cast<long>(i) * cout + 8 * v, acc[i][v]);
}

template <int V>
__attribute__((target("avx2,fma"))) void chunk(const float* x, int x_stride, const float* dy, int pixels, int cin,
                                                int cout, float* dw) {
  constexpr int I = V >= 3 ? 3 : V == 2 ? 4 : 6;
  int i = 0;
  for (; i + I <= cin; i += I) block<I, V>(x + i, x_stride, dy, pixels, cout, dw + static_cast<long>(i) * cout);
  for (; i < cin; ++i) block<1, V>(x + i, x_stride, dy, pixels, cout, dw + static_cast<long>(i) * cout);
}

bool has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif

}  // namespace

void accumulate_weight_gradient(const float* x, int x_stride, const float* dy, int pixels, int cin, int cout, float* dw) {
#ifdef OPFORGE_HAVE_X86
  static const bool vector = has_avx2_fma();
  if (vector && cout % 8 == 0) {
    // Chunks of up to 32 output channels; each chunk's dy and dw are
    // addressed from its first channel with the full cout as their stride.
    for (int o = 0; o < cout; o += 32) {
      const int vectors = (cout - o) / 8 >= 4 ? 4 : (cout - o) / 8;
      switch (vectors) {
        case 4: chunk<4>(x, x_stride, dy + o, pixels, cin, cout, dw + o); break;
        case 3: chunk<3>(x, x_stride, dy + o, pixels, cin, cout, dw + o); break;
        case 2: chunk<2>(x, x_stride, dy + o, pixels, cin, cout, dw + o); break;
        default: chunk<1>(x, x_stride, dy + o, pixels, cin, cout, dw + o); break;
      }
    }
    return;
  }
#endif
  portable(x, x_stride, dy, pixels, cin, cout, dw);
}

}  // namespace opforge::learner::detail
