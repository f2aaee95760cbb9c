#pragma once
// The inner loop of the CPU convolutions: a block of consecutive pixels of
// one output row times a chunk of output channels, accumulated over a list
// of taps. Each tap names where the block's first pixel reads its input
// (pixel p reads `cin` values at input + p·cin) and the tap's weights,
// [cin][padded cout] with the chunk's channels contiguous.

#include <cstddef>
#include <span>

#include <opencv2/core.hpp>

#include "opforge/model/model.hpp"

namespace opforge::model::detail {

inline constexpr int kLanes = 8;        ///< floats per vector (AVX2)
inline constexpr int kMaxVectors = 4;   ///< vectors per channel chunk (32 channels)
inline constexpr int kMaxKernel = 15;

struct Tap {
  const float* input;
  const float* weights;
};

/// Pixels per block for a chunk of `vectors` vectors: P·V accumulators, P
/// broadcasts and one weight vector fit the 16 AVX2 registers.
constexpr int block_pixels(int vectors) { return vectors == 4 ? 3 : vectors == 3 ? 3 : vectors == 2 ? 4 : 6; }

/// acc[p·vectors·kLanes + c] = Σ_taps Σ_i input[p·cin + i]·weights[i·stride + c]
/// for p < pixels·blocks, c < vectors·kLanes: `blocks` consecutive blocks of
/// `pixels` (1 or block_pixels(vectors)) pixels that read the same taps.
void run_kernel(bool vectorised, int vectors, int pixels, int blocks, const Tap* taps, int tap_count, int cin,
                int weight_stride, float* acc);

bool cpu_has_avx2_fma();

/// A stride-1 "SAME" convolution plus bias (the layer's normaliser and
/// activation ignored) of output rows 0, row_step, 2·row_step, …, written
/// one after another (⌈rows/row_step⌉ rows of cols·cout values); rows in
/// parallel, each row's arithmetic fixed.
void convolve_rows(const LayerSpec& layer, std::span<const float> kernel, std::span<const float> bias,
                   const float* input, int rows, int cols, float* output, bool vectorised, int row_step = 1);

/// Whether the streaming forward (stride-1 layers, adaptive or no
/// normalisation, no residuals) runs the network; else layered_forward.
bool streams(const NetworkSpec& spec);
/// The forward pass layer by layer with whole activations: strides,
/// transposed layers, instance normalisation and residuals (Fan et al.).
cv::Mat layered_forward(const Model& model, const cv::Mat& input, bool vectorised);
double layered_peak_bytes(const NetworkSpec& spec, int rows, int cols);

}  // namespace opforge::model::detail
