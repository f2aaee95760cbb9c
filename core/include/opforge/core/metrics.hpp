#pragma once
// Image quality metrics on the [0, 1] scale, computed in double.
//
//  - psnr: 10·log10(1 / MSE) over every value of every channel (peak 1.0);
//    +infinity for identical images.
//  - ssim: Wang, Bovik, Sheikh, Simoncelli, "Image Quality Assessment: From
//    Error Visibility to Structural Similarity", IEEE TIP 13(4), 2004, computed
//    as MATLAB's `ssim`: 11×11 Gaussian window with σ = 1.5, replicate padding,
//    K1 = 0.01, K2 = 0.03, dynamic range L = 1; the mean of the SSIM map. For
//    colour images the per-channel values are averaged.
//  - max_abs: the largest absolute difference of any value.
//
// For super-resolution, `y_channel` compares only the luma of MATLAB's
// rgb2ycbcr, Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 (unrounded), and
// `shave` removes that many pixels from every border first (the SRCNN /
// BasicSR `test_y_channel` protocol). PSNR on Y in [0,1] with peak 1 equals
// PSNR on Y·255 with peak 255.

#include "opforge/core/image.hpp"

namespace opforge {

struct MetricOptions {
  bool y_channel = false;  ///< compare MATLAB rgb2ycbcr luma only (RGB inputs)
  int shave = 0;           ///< pixels removed from every border before comparing
};

struct Metrics {
  double psnr_db = 0;
  double ssim = 0;
  double max_abs = 0;
};

/// Throws opforge::Error when sizes or channel counts differ, or the shave
/// leaves nothing to compare.
Metrics compare_images(const Image& a, const Image& b, const MetricOptions& options = {});

double psnr(const Image& a, const Image& b);
double ssim(const Image& a, const Image& b);
double max_abs_diff(const Image& a, const Image& b);

/// MATLAB rgb2ycbcr luma of an RGB image in [0,1] (float32 in, float32 out).
Image matlab_luma(const Image& rgb);

}  // namespace opforge
