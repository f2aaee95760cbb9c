#pragma once
// The CPU executor's convolution on its own, for callers that keep every
// activation (the learner's forward and backward passes): one stride-1
// "SAME" convolution of an H×W×cin image with an HWIO kernel, plus a bias.

#include <span>
#include <vector>

#include "opforge/model/model.hpp"
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

/// A 4×4, stride-2, padding-1 transposed convolution (PyTorch's
/// ConvTranspose2d, kernel HWIO [4][4][cin][cout]) is four stride-1 3×3
/// convolutions of its input, one per output phase: output (2m+py, 2n+px)
/// is phase (py, px)'s output at (m, n). This is phase (py, px)'s 3×3 HWIO
/// kernel: out[2m] reads x[m−1]·W[3] + x[m]·W[1], out[2m+1] reads
/// x[m]·W[2] + x[m+1]·W[0], rows and columns alike; the other taps are zero.
std::vector<float> transposed_phase_kernel(const std::vector<float>& kernel4, int cin, int cout, int py, int px);
/// The row (or column) of the 4×4 kernel that tap `tap` (0..2, offset −1..1)
/// of a phase with parity `parity` reads, or −1 where the tap is zero: the
/// table transposed_phase_kernel is built from (and a phase's weight
/// gradient is folded back through).
int transposed_phase_tap(int parity, int tap);

/// A normalised layer's per-channel scale and shift, z = scale·y + shift,
/// from the float64 sums of y and y² over `count` values of each channel
/// (mean, biased variance): CAN's adaptive normalisation
/// w0·y + w1·((y − μ)/√(σ² + ε) + β), or an instance norm γ·(y − μ)/√(σ² + ε) + β.
/// Every executor folds its statistics here, so they agree to the rounding.
void fold_normaliser(const NetworkSpec& spec, const LayerSpec& layer, const LayerWeights& weights, const double* sum,
                     const double* squares, double count, float* scale, float* shift);

}  // namespace opforge::model
