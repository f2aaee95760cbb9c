#pragma once
// Photographic style transfer by local Laplacian filtering.
//
// M. Aubry, S. Paris, S. W. Hasinoff, J. Kautz, F. Durand, "Fast Local
// Laplacian Filters: Theory and Applications", ACM TOG 33(5), 2014, §6
// (style_transfer.m in the authors' code); the "Photographic style" operator
// of Chen et al. (ICCV 2017) and "Stylization" of Fan et al. (ECCV 2018),
// who call style_transfer(gray, M, 20, 3) and copy the grey result to three
// channels. OPERATORS.md §6 outlines it; no reference outputs exist, so it is
// tested by its properties.
//
// On grey images (MATLAB rgb2gray of colour ones), with M the model's grey:
//   1. I ← match(I, M): intensity histogram matching, f = cdf_M⁻¹ ∘ cdf_I
//      (256 bins for I, 65536 for M).
//   2. `iterations` times:
//      a. f_∇ = cdf_{|∇M|}⁻¹ ∘ cdf_{|∇I|} on gradient magnitudes (forward
//         differences; the same bin counts, over [0, the larger maximum]);
//      b. I ← LLF(I) with r(d) = sign(d)·f_∇(|d|), f_∇ tabulated at 256 points
//         of |d| ∈ [0, 1] and interpolated linearly (llf_discrete.m); beyond
//         the observed gradient range f_∇ continues with slope 1, so large
//         edges keep their height;
//      c. I ← (I − min I)/(max I − min I) (skipped when the range is below 1e-9);
//      d. I ← match(I, M).
// Colour inputs give the grey result in all three channels (Fan et al.).

#include "opforge/core/image.hpp"

namespace opforge {

struct StyleTransferParams {
  int iterations = 3;  ///< gradient-histogram transfers
  int samples = 20;    ///< LLF reference levels N
};

/// `style` is the model image M (grey or colour; any size).
Image style_transfer(const Image& input, const Image& style, const StyleTransferParams& params = {});

/// cdf_model⁻¹ ∘ cdf_values applied to `values` (histogram matching on
/// [lo, hi] with 256 bins for `values` and 65536 for `model`). Each value maps
/// to the model quantile at the middle of its bin's probability mass.
Plane match_histogram(const Plane& values, const Plane& model, double lo, double hi);

}  // namespace opforge
