#pragma once
// Joint weighted median filter.
//
// Q. Zhang, L. Xu, J. Jia, "100+ Times Faster Weighted Median Filter (WMF)",
// CVPR 2014. Matches the authors' jointWMF.m + jointWMF.h as OPERATORS.md §5
// specifies: clipped square windows, weights W[f(p), f(q)] from a per-pixel
// feature index, the lower weighted median per channel, the authors' input
// quantisation (nI levels) and feature map — for a 3-channel guide, 6-bit
// colour clustering with cv::kmeans from OpenCV's default RNG state (so the
// labels are the reference's, deterministically).
//
// guide = self_double: the papers' literal call jointWMF(P, P, …) with a double
//   guide, which jointWMF.m rescales to 8 bits *and* multiplies σ by
//   255/range (σ = 25.5 becomes ≈ 6500: nearly an unweighted median). Kept.
// guide = self_u8: the 8-bit image as guide, σ as given.
//
// Two exact methods, chosen per image:
//  - nearly uniform weights (the literal call; any σ whose weights differ by
//    less than 1/(2r+1)² of each other): each row slides a histogram of
//    levels and tracks the unweighted median; per pixel, the bounds of its
//    weights prove that this is the weighted median too, and the few windows
//    where they cannot (even windows split exactly in two) are evaluated
//    directly. The result equals the direct evaluation bit for bit. Bounds
//    known before the clustering (the feature space is bounded) let the
//    first pass run beside OpenCV's k-means; only the undecided windows
//    wait for the labels.
//  - otherwise, the paper's joint (feature label × level) histogram slid
//    along each row, tracking the median level from pixel to pixel: O(r)
//    window updates plus a sum over the labels present, per pixel. It
//    differs from the direct evaluation only where weighted sums tie exactly
//    and their summation order decides.
// reference::weighted_median evaluates every window directly (O(r²) a pixel).

#include "opforge/core/image.hpp"

namespace opforge {

enum class WmfGuide { self_double, self_u8 };

struct WeightedMedianParams {
  double radius = 10;      ///< window radius, rounded as (int)(r + 0.5)
  double sigma = 25.5;     ///< weight σ in 0–255 units
  WmfGuide guide = WmfGuide::self_double;
  int iterations = 1;      ///< repeats, same feature map each time
  int levels_input = 256;  ///< nI: levels of the filtered values
  int levels_feature = 256;///< nF: feature levels (clusters of a colour guide)
};

Image weighted_median(const Image& input, const WeightedMedianParams& params = {});

namespace reference {
/// Every window evaluated directly: the plain version the fast one is tested against.
Image weighted_median(const Image& input, const WeightedMedianParams& params = {});
/// The joint-histogram method for every image, whatever the weights (the
/// filter uses it only where the weights are not nearly uniform).
Image weighted_median_joint_histogram(const Image& input, const WeightedMedianParams& params = {});
}  // namespace reference

}  // namespace opforge
