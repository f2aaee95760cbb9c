#pragma once
// The inner loop of a convolution's weight gradient: one tap's
//   dw[i][o] += Σ_p x[p·x_stride + i] · dy[p·cout + o]
// over a run of pixels, as a register-blocked AVX2 kernel where the CPU has
// it and plain loops elsewhere (both add the pixels in the same order).

namespace opforge::learner::detail {

void accumulate_weight_gradient(const float* x, int x_stride, const float* dy, int pixels, int cin, int cout, float* dw);

}  // namespace opforge::learner::detail
