#pragma once
// Weighted-least-squares edge-preserving smoothing.
//
// Z. Farbman, R. Fattal, D. Lischinski, R. Szeliski, "Edge-Preserving
// Decompositions for Multi-Scale Tone and Detail Manipulation", ACM TOG 27(3)
// (SIGGRAPH), 2008. Matches the authors' wlsFilter.m as called channel by
// channel (OPERATORS.md §2): each channel g is its own guide through
// ℓ = ln(g + 2⁻⁵²), with edge weights λ / (|Δℓ|^α + 1e-4), and
// (I + L_a) u = g is solved exactly (GridCholesky, the multifrontal
// Cholesky of grid_solver.hpp; its analysis is shared by all channels and
// cached per image size).
//
// Input: CV_32FC1/CV_32FC3 in [0,1] (8-bit lattice promoted to exact k/255).
// Output: same size and channels, float32. Channels are solved one after
// another, each factorisation parallel inside; results are bit-identical for
// any thread count. An image
// whose factorisation cannot fit in memory is refused up front (opforge::Error).

#include "opforge/core/image.hpp"

namespace opforge {

struct WlsSmoothParams {
  double lambda = 1.0;  ///< smoothness; larger = smoother
  double alpha = 1.2;   ///< gradient exponent; larger = sharper edges kept
};

Image wls_smooth(const Image& input, const WlsSmoothParams& params = {});

namespace reference {
/// The same system solved per channel by Eigen's SimplicialLDLT, sequentially.
Image wls_smooth(const Image& input, const WlsSmoothParams& params = {});
}  // namespace reference

}  // namespace opforge
