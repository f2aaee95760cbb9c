#pragma once
// Local Laplacian filtering.
//
// S. Paris, S. W. Hasinoff, J. Kautz, "Local Laplacian Filters: Edge-aware
// Image Processing with a Laplacian Pyramid", ACM TOG 30(4) (SIGGRAPH), 2011.
// M. Aubry, S. Paris, S. W. Hasinoff, J. Kautz, F. Durand, "Fast Local
// Laplacian Filters: Theory and Applications", ACM TOG 33(5), 2014.
// Matches the authors' fast_LLF_tog_14 code (llf.m, llf_general.m) as
// OPERATORS.md §6 specifies: Burt–Adelson pyramids with reweighted
// (normalised-convolution) borders, N sampled reference levels with linear
// interpolation between them, on the grey image g = rgb2gray(P); colour comes
// back as out_c = F(g)·P_c/(g + 2⁻⁵²), unclipped.
//
// remap = detail (llf.m: adds fact·d·exp(−d²/2σ²) to g's own pyramid),
//         toy (the authors' remapping_function.m), or
//         paris (Paris 2011: σ_r, α, β).

#include <functional>

#include "opforge/core/image.hpp"

namespace opforge {

enum class LlfRemap { detail, toy, paris };

struct LocalLaplacianParams {
  LlfRemap remap = LlfRemap::detail;
  double fact = 5.0;    ///< detail: detail gain
  double sigma = 0.1;   ///< detail: width of the detail range
  double sigma_r = 0.1; ///< paris: detail/edge threshold
  double alpha = 0.25;  ///< paris: detail exponent (< 1 boosts detail)
  double beta = 1.0;    ///< paris: edge slope (< 1 compresses range)
  int samples = 0;      ///< reference levels N; 0 = 10 for detail, 20 otherwise
};

/// F(g) of a grey image (rows×cols plane), the 1-channel filter result.
Plane local_laplacian_gray(const Plane& gray, int rows, int cols, const LocalLaplacianParams& params = {});

/// F(g) for an arbitrary remapping function r(d) (llf_general.m: the
/// pyramid starts from zero), with N = `samples` reference levels in [0, 1].
Plane local_laplacian_remap_gray(const Plane& gray, int rows, int cols, const std::function<double(double)>& remap,
                                 int samples);

/// The colour (or grey) operator.
Image local_laplacian(const Image& input, const LocalLaplacianParams& params = {});

namespace reference {
/// local_laplacian_gray with the plain pyramid steps (every tap bounds-tested),
/// which the fast steps must reproduce bit for bit.
Plane local_laplacian_gray(const Plane& gray, int rows, int cols, const LocalLaplacianParams& params = {});
}  // namespace reference

}  // namespace opforge
