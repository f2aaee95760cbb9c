#pragma once
// L0 gradient minimisation.
//
// L. Xu, C. Lu, Y. Xu, J. Jia, "Image Smoothing via L0 Gradient Minimization",
// ACM TOG 30(6) (SIGGRAPH Asia), 2011. Matches the authors' L0Smoothing.m
// (half-quadratic splitting, circular derivatives, FFT solve), as specified in
// OPERATORS.md §1.
//
// Input: CV_32FC1 or CV_32FC3 in [0,1]. Computes in float32 (FFTW's
// single-precision transforms: 1.7x faster than float64 at 1 MP); the
// per-pixel threshold is a hard decision, so a few decisions near it can
// differ from a float64 solve, and the conformance gate (>= 60 dB against
// the authors' code) holds at 85-121 dB (126-129 dB in float64).
// Output: same size and channel count, float32, unclipped (it can exceed
// [0,1] slightly). Parallel over rows and FFT
// columns with TBB; bit-identical for any thread count.

#include "opforge/core/image.hpp"

namespace opforge {

struct L0SmoothParams {
  double lambda = 0.02;  ///< smoothness weight; larger = fewer edges kept
  double kappa = 2.0;    ///< growth factor of β per iteration; the authors use 2
};

Image l0_smooth(const Image& input, const L0SmoothParams& params = {});

namespace reference {
/// Plain, single-threaded transcription of OPERATORS.md §1 with cv::dft:
/// the yardstick the optimised l0_smooth is tested against.
Image l0_smooth(const Image& input, const L0SmoothParams& params = {});
/// The optimised solver run in double precision instead of the operator's
/// float: separates the FFT precision from the rest in the tests.
Image l0_smooth_double(const Image& input, const L0SmoothParams& params = {});
}  // namespace reference

}  // namespace opforge
