#pragma once
// The CPU executor's convolution on its own, for callers that keep every
// activation (the learner's forward and backward passes): one stride-1
// "SAME" convolution of an H×W×cin image with an HWIO kernel, plus a bias.

#include <span>

#include "opforge/model/spec.hpp"

namespace opforge::model {

/// output[y,x,o] = bias[o] + Σ input[y+(ky−kh/2)·d, x+(kx−kw/2)·d, i]·kernel[ky,kx,i,o]
/// over zero padding, with the vector kernels where the CPU has them; rows
/// in parallel, each row's arithmetic fixed (the result does not depend on
/// the thread count). `bias` may be empty. `layer` gives the kernel size,
/// channels and dilation (its stride must be 1; normaliser and activation
/// are ignored).
void convolve(const LayerSpec& layer, std::span<const float> kernel, std::span<const float> bias, const float* input,
              int rows, int cols, float* output);

}  // namespace opforge::model
