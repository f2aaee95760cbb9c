#pragma once
// Rolling guidance filter.
//
// Q. Zhang, X. Shen, L. Xu, J. Jia, "Rolling Guidance Filter", ECCV 2014.
// Matches the authors' RollingGuidanceFilter.m (OPERATORS.md §4): each step
// is a joint bilateral filter approximated on J. Chen's bilateral grid
// (J. Chen, S. Paris, F. Durand, "Real-time Edge-Aware Image Processing with
// the Bilateral Grid", SIGGRAPH 2007; bilateralFilter.m), channel by channel,
// and the first step starts from a **constant** guide — the paper's Gaussian
// step. (OpenCV's ximgproc::rollingGuidanceFilter starts from the source,
// opencv_contrib issue 1738, and is not the paper's algorithm.)
//
// Input: CV_32FC1/CV_32FC3 in [0,1]. Output: same size and channels, float32.
// Channels run in parallel; bit-identical for any thread count.

#include "opforge/core/image.hpp"

namespace opforge {

struct RollingGuidanceParams {
  double sigma_s = 3.0;   ///< spatial σ: scale of the structures removed (px)
  double sigma_r = 0.05;  ///< range σ
  int iterations = 4;     ///< rolling steps
};

Image rolling_guidance(const Image& input, const RollingGuidanceParams& params = {});

/// One bilateral-grid step: data D filtered with edges E (both rows×cols).
/// Built, blurred and sliced one grid row at a time in cache-sized buffers.
Plane bilateral_grid_filter(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r);

namespace reference {
/// The same step on a whole grid, as bilateralFilter.m does it: the plain
/// version the streaming one is tested against (bit-identical).
Plane bilateral_grid_filter(const Plane& data, const Plane& edge, int rows, int cols, double sigma_s, double sigma_r);
}  // namespace reference

}  // namespace opforge
