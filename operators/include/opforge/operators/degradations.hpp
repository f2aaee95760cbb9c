#pragma once
// Degradations (registry kind `degradation`: input = op(source), target =
// source), OPERATORS.md §9. They feed super-resolution, denoising and
// deblocking datasets.
//
//  - resize_bicubic: MATLAB imresize(…, 'bicubic') with antialiasing — Keys
//    cubic (a = −0.5), kernel widened by 1/scale when shrinking, MATLAB's
//    output size ⌈s·n⌉ and half-sample symmetric borders, smaller scale first,
//    float64 with no rounding between passes. Not cv::resize (a = −0.75, no
//    antialiasing).
//  - gaussian_noise: y = x + (σ/255)·n, n ~ N(0,1) per value from the counter
//    RNG keyed by the seed, so the same seed gives the same noise on any
//    thread count; optionally clipped and quantised to 8 bits.
//  - jpeg_degrade: baseline JPEG through libjpeg-turbo at a quality (4:2:0 or
//    4:4:4), decoded with the library defaults; RGB, MATLAB-grey or the Y of
//    rgb2ycbcr as a greyscale JPEG.

#include <cstdint>
#include <vector>

#include "opforge/core/image.hpp"

namespace opforge {

struct ResizeBicubicParams {
  double scale = 0.5;  ///< ignored when width and height are given
  int width = 0;       ///< output width, 0 = from scale
  int height = 0;      ///< output height, 0 = from scale
};
Image resize_bicubic(const Image& input, const ResizeBicubicParams& params = {});

/// Super-resolution pairs (OPERATORS.md §9.2): the reference HR is the source
/// cropped at the bottom/right to a multiple of `modcrop` (0 = the scale) and,
/// in Y mode, reduced to the luma of MATLAB rgb2ycbcr; LR = bicubic(HR, 1/s);
/// the network input is LR (`lr`, BasicSR/HCFlow) or bicubic(LR) back to the HR
/// size (`ilr`, SRCNN/VDSR/Fan et al.). All in float64 (MATLAB's double path).
enum class SrMode { ilr, lr };
struct SrBicubicParams {
  int scale = 3;        ///< super-resolution factor
  SrMode mode = SrMode::ilr;
  bool y_only = false;  ///< keep only the Y channel (Fan et al.)
  int modcrop = 0;      ///< crop to a multiple of this (0 = scale)
};
/// The reference HR image for a source.
Image sr_reference(const Image& source, const SrBicubicParams& params = {});
/// The network input for a reference made by sr_reference.
Image sr_input(const Image& reference, const SrBicubicParams& params = {});

enum class NoiseMode { rgb, gray };
struct GaussianNoiseParams {
  double sigma = 25.0;  ///< standard deviation on the 0–255 scale
  bool clip = true;     ///< clip to [0, 1]
  bool quantize = true; ///< round to 8-bit levels (k/255), after clipping
  NoiseMode mode = NoiseMode::rgb;  ///< gray: convert to MATLAB grey first
};
Image gaussian_noise(const Image& input, const GaussianNoiseParams& params, std::uint64_t seed);

enum class JpegMode { rgb, gray, y };
struct JpegDegradeParams {
  int quality = 20;        ///< libjpeg scaling of the Annex K tables
  bool chroma_420 = true;  ///< 4:2:0 (libjpeg default) or 4:4:4
  JpegMode mode = JpegMode::rgb;
};
/// The encoded bytes (what a user would store) …
std::vector<std::uint8_t> jpeg_encode(const Image& input, const JpegDegradeParams& params = {});
/// … and the decoded degraded image, k/255 (1 channel for gray/y).
Image jpeg_degrade(const Image& input, const JpegDegradeParams& params = {});

}  // namespace opforge
