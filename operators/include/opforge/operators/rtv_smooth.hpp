#pragma once
// Structure extraction from texture via relative total variation.
//
// L. Xu, Q. Yan, Y. Xia, J. Jia, "Structure Extraction from Texture via
// Relative Total Variation", ACM TOG 31(6) (SIGGRAPH Asia), 2012. Matches the
// authors' tsmooth.m (OPERATORS.md §3). The authors' file branches on the
// solver: MATLAB runs a modified incomplete Cholesky preconditioner with PCG
// to relative residual 0.1 (at most 100 iterations), Octave an exact sparse
// solve. The two differ by 39–53 dB, so the solver is part of the operator:
// `solver = pcg` (default, what MATLAB users get) or `direct` (GridCholesky).
//
// Input: CV_32FC1/CV_32FC3 in [0,1] (8-bit lattice promoted to exact k/255).
// Output: same size and channels, float32. Bit-identical for any thread count.

#include <vector>

#include "opforge/core/image.hpp"

namespace opforge {

enum class RtvSolver { pcg, direct };

struct RtvSmoothParams {
  double lambda = 0.01;     ///< smoothness (the authors use ≤ 0.05)
  double sigma = 3.0;       ///< texture scale in pixels
  double sharpness = 0.02;  ///< ε_s; smaller = sharper
  int iterations = 4;       ///< outer iterations
  RtvSolver solver = RtvSolver::pcg;
};

/// What the solver did, per outer iteration and channel (PCG only).
struct RtvReport {
  std::vector<int> pcg_iterations;
  std::vector<double> pcg_relative_residuals;
};

Image rtv_smooth(const Image& input, const RtvSmoothParams& params = {}, RtvReport* report = nullptr);

}  // namespace opforge
